#!/usr/bin/env python3
"""The test of examples/asio_shedding_server.cpp (run by CTest).

Starts the server with --inject-readings on an ephemeral loopback port,
drives the shedder's memory reading through the levels (normal, warning
0.85, degraded 0.92, shedding 0.97, back at 0.70) and a forced maintenance
mode, and at each checks the status of a normal, a sheddable and a
critical request and of /ready. Checks the per-IP limit (429 after a burst
of 20). Then sends SIGTERM with a slow request in flight: the slow request
must end with 200, a new one get 503 draining, /ready 503, /live 200, and
the server exit 0 within its grace period. Then starts it again with the
real sampler and a 300 ms grace period: /admin is not served, and a
request that outlives the grace period is cut off (exit 3). Exits 0 when
all held; prints each failed check otherwise. Loopback only; bounded
(about 4 s).

usage: check_shedding_server.py <path to armor_asio_shedding_server>
"""
import http.client
import signal
import subprocess
import sys
import threading
import time

GRACE_MS = 4000
failures = []


def check(what, ok):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def request(port, method, path, priority=None, source="127.0.0.1"):
    """One request on its own connection; (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        headers = {"X-Priority": priority} if priority else {}
        conn.request(method, path, headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        conn.close()


def wait_in_flight(port, count=1, limit=10.0):
    """Until the drain check on /ready counts `count` requests in flight (the
    slow request has reached the work), at most `limit` seconds: a fixed sleep
    is too short on a loaded machine, and SIGTERM would then find nothing to
    drain."""
    end = time.monotonic() + limit
    want = f'"detail":"accepting, {count} in flight"'
    while time.monotonic() < end:
        if want in request(port, "GET", "/ready")[2]:
            return True
        time.sleep(0.01)
    return False


def main():
    server = subprocess.Popen([sys.argv[1], "--inject-readings", "--grace-ms", str(GRACE_MS)],
                              stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(40, server.kill)  # never outlive CTest's timeout
    watchdog.start()
    try:
        first = server.stdout.readline()
        print("server: " + first.strip())
        port = int(first.split()[2].split(":")[1])
        run(server, port)
    finally:
        watchdog.cancel()
        if server.poll() is None:
            server.kill()
            server.wait()
    cut_off(sys.argv[1])
    print("all checks held" if not failures else f"{len(failures)} checks failed")
    return 1 if failures else 0


def run(server, port):
    # (reading, level, status of normal / sheddable / critical, status of /ready)
    steps = [
        (None, "normal", 200, 200, 200, 200),
        ("0.85", "warning", 200, 200, 200, 200),
        ("0.92", "degraded", 200, 503, 200, 200),
        ("0.97", "shedding", 503, 503, 200, 503),
        ("0.70", "normal", 200, 200, 200, 200),
    ]
    for i, (value, level, normal, sheddable, critical, ready) in enumerate(steps):
        if value is not None:
            status, _, body = request(port, "POST", f"/admin/reading?resource=memory&value={value}")
            check(f"reading {value}: admin answers 200, level {level} (got {status} {body.strip()!r})",
                  status == 200 and body.strip() == f"level {level}")
        source = f"127.0.0.{10 + i}"  # a bucket of its own for each step
        for priority, want in (("normal", normal), ("sheddable", sheddable), ("critical", critical)):
            status, headers, body = request(port, "GET", "/", priority, source)
            check(f"{level}: a {priority} request gets {want} (got {status})", status == want)
            if status == 503:
                check(f"{level}: the 503 says overloaded, Retry-After: 2 (got {body.strip()!r}, "
                      f"{headers.get('Retry-After')})", body.strip() == "overloaded" and headers.get("Retry-After") == "2")
        status, _, body = request(port, "GET", "/ready")
        check(f"{level}: /ready answers {ready} (got {status} {body.strip()!r})", status == ready)
        if status == 503:
            check(f"{level}: /ready says why (got {body.strip()!r})", '"detail":"level shedding, mode automatic: refusing normal calls"' in body)

    # A forced maintenance mode refuses normal requests, passes critical ones.
    status, _, _ = request(port, "POST", "/admin/mode?mode=maintenance")
    check("mode maintenance taken", status == 200)
    check("maintenance: a normal request gets 503", request(port, "GET", "/", "normal", "127.0.0.20")[0] == 503)
    check("maintenance: a sheddable request gets 503", request(port, "GET", "/", "sheddable", "127.0.0.20")[0] == 503)
    check("maintenance: a critical request gets 200", request(port, "GET", "/", "critical", "127.0.0.20")[0] == 200)
    status, _, body = request(port, "GET", "/ready")
    check(f"maintenance: /ready answers 503 (got {status} {body.strip()!r})",
          status == 503 and '"detail":"level normal, mode maintenance: refusing normal calls"' in body)
    request(port, "POST", "/admin/mode?mode=automatic")
    check("automatic again: /ready answers 200", request(port, "GET", "/ready")[0] == 200)

    # The per-IP limit: bursts of 20, then 429 with Retry-After.
    statuses = [request(port, "GET", "/", None, "127.0.0.30") for _ in range(22)]
    check(f"per IP: 20 answered, then 429 (got {[s for s, _, _ in statuses]})",
          [s for s, _, _ in statuses] == [200] * 20 + [429] * 2)
    check("per IP: the 429 carries Retry-After", "Retry-After" in statuses[-1][1])
    check("another IP is not limited by it", request(port, "GET", "/", None, "127.0.0.31")[0] == 200)

    # SIGTERM with a slow request in flight.
    slow = {}

    def slow_request():
        slow["answer"] = request(port, "GET", "/slow?ms=1500", None, "127.0.0.40")

    t = threading.Thread(target=slow_request)
    t.start()
    check("draining: the slow request is in flight before SIGTERM", wait_in_flight(port))
    sent = time.monotonic()
    server.send_signal(signal.SIGTERM)
    ready = None
    for _ in range(100):  # the signal is handled within a few ms
        ready = request(port, "GET", "/ready")
        if ready[0] == 503:
            break
        time.sleep(0.01)
    check(f"draining: /ready answers 503 draining (got {ready[0]} {ready[2].strip()!r})",
          ready[0] == 503 and '"name":"drain","kind":"drain","required":true,"ok":false,"detail":"draining, ' in ready[2])
    status, headers, body = request(port, "GET", "/", "critical", "127.0.0.41")
    check(f"draining: a new request, even critical, gets 503 draining (got {status} {body.strip()!r})",
          status == 503 and body.strip() == "draining")
    check("draining: /live answers 200", request(port, "GET", "/live")[0] == 200)
    t.join(10)
    answer = slow.get("answer")
    check(f"draining: the request in flight ends with 200 (got {answer[0] if answer else None})",
          answer is not None and answer[0] == 200)
    try:
        code = server.wait(timeout=GRACE_MS / 1000 + 2)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - sent
    rest = server.stdout.read() if code is not None else ""
    print("server: " + rest.strip().replace("\n", "\nserver: "))
    log = rest
    for change in ("normal -> warning", "warning -> degraded", "degraded -> shedding", "shedding -> normal"):
        check(f"the server logged the level change {change} once", log.count(f"load level {change} (memory") == 1)
    check(f"the server exits 0 after the drain (got {code}, {took:.2f} s after SIGTERM; grace {GRACE_MS / 1000} s)",
          code == 0 and took < GRACE_MS / 1000)


def cut_off(binary):
    """Without --inject-readings (the real sampler), /admin is not served;
    a request that outlives a 300 ms grace period is cut off and the
    server exits 3."""
    server = subprocess.Popen([binary, "--grace-ms", "300"], stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(20, server.kill)
    watchdog.start()
    try:
        port = int(server.stdout.readline().split()[2].split(":")[1])
        status, _, _ = request(port, "POST", "/admin/reading?resource=memory&value=0.97")
        check(f"with the sampler: /admin is not served (got {status})", status == 404)
        check("with the sampler: /live answers 200", request(port, "GET", "/live")[0] == 200)
        slow = {}

        def slow_request():
            try:
                slow["answer"] = request(port, "GET", "/slow?ms=5000", None, "127.0.0.50")
            except (OSError, http.client.HTTPException) as e:
                slow["error"] = e

        t = threading.Thread(target=slow_request)
        t.start()
        check("past the grace period: the slow request is in flight before SIGTERM", wait_in_flight(port))
        sent = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - sent
        t.join(10)
        check(f"past the grace period: the server exits 3 (got {code}, {took:.2f} s after SIGTERM)",
              code == 3 and took < 2)
        check("past the grace period: the request in flight gets no answer", "error" in slow)
    finally:
        watchdog.cancel()
        if server.poll() is None:
            server.kill()
            server.wait()


if __name__ == "__main__":
    sys.exit(main())
