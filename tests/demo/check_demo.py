#!/usr/bin/env python3
"""Runs the armor demo briefly and checks what it printed and the SVG it wrote.

    check_demo.py <armor_demo executable> <svg path> [extra demo arguments]

The demo runs with --quick --no-color --svg <svg path>. The check fails when
the demo exits non-zero, misses a phase, a summary row or the SVG line, when
its numbers do not add up, or when the SVG is missing, is not XML, or lacks
one of its lanes.

It checks what the demo claims of armor against the plain client (issue 22):
armor, with an armor::cache in front of its pipeline, answers at least as
many calls as the plain client (which has no cache) in every phase, and
strictly more in the failing phase; its answers add up (live + fresh + stale,
per phase and in all); stale answers are marked (a "stale" line in the
timeline, a row of their own) and only stand in for calls whose pipeline gave
no answer; it sends the upstream fewer requests and gets fewer 429s.

It also checks what issue 17 promises of the breaker in the demo's pipeline
(backoff outside the breaker, 429s judged `throttled`):

- no breaker open caused by a 429: the demo counts an open as caused by a 429
  when the attempt whose settling opened the breaker (the listener runs on
  that call's thread) was answered 429. The breaker must also have seen 429s
  (its `throttled` count above 0 in the throttling phase), or the check
  proves nothing;
- calls the breaker refused return at once: the retry layer waited out no
  refusal of the breaker (no retry after a `circuit_open` refusal, counted
  by its listener); every call the breaker refused before it sent anything
  ended there (failed fast); and their median time, call start to result
  (steady_clock), is under MAX_FAIL_FAST_MEDIAN_US. A retry layer that
  waited for the open breaker would take hundreds of milliseconds (the
  demo's breaker opens for 0.5 s with --quick); a thread descheduled now
  and then on a loaded machine moves the maximum, not the median.
"""
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

PHASES = ["healthy", "failing (500)", "throttling (429)", "slow", "healthy again"]
SUMMARY_ROWS = [
    "calls",
    "answered",
    "answered live (the upstream's 200)",
    "answered fresh from the cache (no request)",
    "answered stale from the cache (marked)",
    "not answered",
    "served by the cache without the pipeline",
    "joined a call in flight for the same item",
    "succeeded after sending",
    "failed after sending",
    "failed fast (breaker open, nothing sent)",
    "not sent (limit, no token in time, deadline)",
    "refused by the quota",
    "requests the upstream received",
    "retries",
    "429s received (counted by the upstream)",
    "breaker opened",
    "breaker opens caused by a 429",
    "429s the breaker saw and did not count",
    "refused by the breaker: time to return",
    "breaker refusals the retry layer waited out",
    "quota used",
]
MAX_FAIL_FAST_MEDIAN_US = 1000
# Issue 22: armor (its cache in front of the pipeline) answers at least as
# many calls as the plain client in every phase, and strictly more where the
# upstream answers only 500s: there the plain client answers none, and armor
# answers what it has cached, fresh or stale.
PHASES_ARMOR_MORE_THAN_PLAIN = ["failing (500)"]
SVG_GROUPS = ["phases", "breaker", "calls", "clients", "limit", "quota", "axis", "legend"]
SVG_NS = "{http://www.w3.org/2000/svg}"

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def summary_value(out, name):
    """The two columns of a summary row, as strings (with armor, without)."""
    m = re.search(r"^  " + re.escape(name) + r" {2,}(\S.*?) {2,}(\S(?:.*\S)?)\s*$", out, re.M)
    return (m.group(1), m.group(2)) if m else None


def summary_by_phase(out):
    """The 'summary by phase' rows, by phase name: (armor's answers, the plain
    client's, armor's live, fresh and stale answers)."""
    at = out.find("\nsummary by phase")
    rows = {}
    if at < 0:
        return rows
    for line in out[at + 1:].split("\n")[2:]:
        m = re.match(r"^  \d/\d (.+?) {2,}\d+ +(\d+) / (\d+) +(\d+) / (\d+) / (\d+) ", line)
        if not m:
            break
        rows[m.group(1)] = tuple(int(g) for g in m.groups()[1:])
    return rows


def breaker_table(out):
    """The rows of 'breaker by phase', by phase name: (opened, by a 429, 429s
    not counted, refused, (median, max) in us or None)."""
    at = out.find("\nbreaker by phase")
    if at < 0:
        return None
    rows = {}
    for line in out[at + 1:].split("\n")[2:]:
        m = re.match(r"^  \d/\d (.+?) {2,}(\d+) +(\d+) +(\d+) +(\d+) +(?:(\d+) / (\d+) µs|-)\s*$", line)
        if not m:
            break
        g = m.groups()
        rows[g[0]] = (int(g[1]), int(g[2]), int(g[3]), int(g[4]),
                      (int(g[5]), int(g[6])) if g[5] is not None else None)
    return rows


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    exe, svg = sys.argv[1], sys.argv[2]
    if os.path.exists(svg):
        os.remove(svg)
    cmd = [exe, "--quick", "--no-color", "--svg", svg] + sys.argv[3:]
    proc = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace", timeout=100)
    sys.stdout.reconfigure(errors="backslashreplace")
    out = proc.stdout
    sys.stdout.write(out)
    sys.stderr.write(proc.stderr)

    check(proc.returncode == 0, f"the demo exited with {proc.returncode}")
    check("\x1b[" not in out, "--no-color output holds ANSI escapes")

    # Every phase is announced, in order.
    positions = []
    for i, name in enumerate(PHASES, 1):
        header = f"phase {i}/{len(PHASES)} {name}"
        at = out.find(header + "  ")
        check(at >= 0, f"no line announcing '{header}'")
        positions.append(at)
    check(positions == sorted(positions), "the phases are not announced in order")

    # The live timeline shows the breaker opening once the upstream fails,
    # retries with their delays, and one line a second.
    after_healthy = out[positions[1]:] if positions[1] >= 0 else ""
    check(re.search(r"^\s+\d+\.\d\ds  breaker\s+closed -> open \(", after_healthy, re.M),
          "the breaker never opened once the upstream failed")
    check(re.search(r"^\s+\d+\.\d\ds  retry\s+attempt \d .*: retrying in \d+ ms", out, re.M), "no retry line")
    ticks = re.findall(r"^\s+\d+\.\d\ds  \|\s+answered \d+ live, \d+ fresh, \d+ stale, \d+ not \| \d+ failed, "
                       r"\d+ failed fast, \d+ not sent \| upstream sent", out, re.M)
    check(len(ticks) >= len(PHASES), f"{len(ticks)} per-second lines for a run of at least {len(PHASES)} seconds")

    # The summary table, and numbers that add up.
    check("summary by phase" in out, "no per-phase summary")
    rows = {}
    for name in SUMMARY_ROWS:
        v = summary_value(out, name)
        check(v is not None, f"no summary row '{name}'")
        rows[name] = v
    if all(rows.values()):
        calls = int(rows["calls"][0])
        plain_calls = int(rows["calls"][1])
        # How armor's calls ended: each exactly one way (the pipeline's ending,
        # or the cache's without it).
        endings = [int(rows[n][0]) for n in ("succeeded after sending", "failed after sending",
                                              "failed fast (breaker open, nothing sent)",
                                              "not sent (limit, no token in time, deadline)", "refused by the quota",
                                              "served by the cache without the pipeline",
                                              "joined a call in flight for the same item")]
        check(calls > 0, "no calls were made")
        check(calls == plain_calls, f"the two clients made {calls} and {plain_calls} calls")
        check(sum(endings) == calls, f"armor's calls ended {sum(endings)} ways, not {calls}")
        # What the callers got: answered (live, fresh, stale) or not.
        answered = int(rows["answered"][0])
        live, fresh, stale = (int(rows[n][0]) for n in ("answered live (the upstream's 200)",
                                                         "answered fresh from the cache (no request)",
                                                         "answered stale from the cache (marked)"))
        check(live + fresh + stale == answered, f"live {live} + fresh {fresh} + stale {stale} != answered {answered}")
        check(answered + int(rows["not answered"][0]) == calls, "armor's answered and unanswered calls do not add up")
        check(fresh == endings[5], "fresh answers differ from the calls the cache served without the pipeline")
        # A stale answer stands in for a call whose pipeline gave none: its own
        # (failed, failed fast, not sent, quota) or the one it joined.
        no_answer = sum(endings[1:5]) + endings[6]
        check(stale <= no_answer, f"{stale} stale answers for {no_answer} calls without a live answer")
        check(stale > 0, "no stale answer: the failing phase should be answered from the cache")
        check(re.search(r"^\s+\d+\.\d\ds  stale\s+item \d+ answered STALE from the cache \(stale-if-error\), instead of: ",
                        out, re.M), "no timeline line marks a stale answer")
        # The plain client has no cache: every answer is live, one request per call.
        check(int(rows["answered"][1]) == int(rows["succeeded after sending"][1]) ==
              int(rows["answered live (the upstream's 200)"][1]), "the plain client's answers are not all live")
        for name in ("answered fresh from the cache (no request)", "answered stale from the cache (marked)"):
            check(rows[name][1].startswith("-"), f"the plain client shows '{name}' {rows[name][1]}: it has no cache")
        check(int(rows["succeeded after sending"][1]) + int(rows["failed after sending"][1]) == plain_calls,
              "the plain client's calls do not add up")
        check(int(rows["requests the upstream received"][1]) == plain_calls,
              "the upstream did not receive one request per plain call")
        avoided = re.search(r"429s avoided: (-?\d+) \(the plain client got (\d+), armor (\d+)", out)
        check(avoided is not None, "no '429s avoided' line")
        if avoided:
            n, plain_429, armor_429 = (int(g) for g in avoided.groups())
            check(n == plain_429 - armor_429, "429s avoided is not the difference of the 429s received")
            check(str(armor_429) == rows["429s received (counted by the upstream)"][0], "429s differ from the table")
    check(re.search(r"fast failures: \d+", out), "no fast-failure line")

    # Issue 22: armor answers at least as many calls as the plain client in
    # every phase, strictly more in the failing one (see
    # PHASES_ARMOR_MORE_THAN_PLAIN); and (issue 18) fewer requests and fewer
    # 429s in all.
    by_phase = summary_by_phase(out)
    check(list(by_phase) == PHASES, f"the per-phase summary's phases are {list(by_phase)}")
    for name, (armor_n, plain_n, live, fresh, stale) in by_phase.items():
        check(live + fresh + stale == armor_n, f"phase '{name}': live + fresh + stale != {armor_n} answers")
        check(armor_n >= plain_n, f"phase '{name}': armor answered {armor_n} calls, the plain client {plain_n}")
        if name in PHASES_ARMOR_MORE_THAN_PLAIN:
            check(armor_n > plain_n, f"phase '{name}': armor answered {armor_n} calls, the plain client {plain_n}:"
                  " armor should answer more")
    if len(by_phase) == len(PHASES) and all(rows.values()):
        check(sum(r[0] for r in by_phase.values()) == int(rows["answered"][0]),
              "armor's answers per phase do not add up to the summary's")
        check(sum(r[1] for r in by_phase.values()) == int(rows["answered"][1]),
              "the plain client's answers per phase do not add up to the summary's")
    if all(rows.values()):
        for name in ("requests the upstream received", "429s received (counted by the upstream)"):
            armor_n, plain_n = int(rows[name][0]), int(rows[name][1])
            check(armor_n < plain_n, f"'{name}': armor {armor_n}, the plain client {plain_n}: armor should have fewer")

    # The breaker: no open caused by a 429, and refusals in microseconds.
    table = breaker_table(out)
    check(table is not None, "no 'breaker by phase' table")
    if table is not None:
        check(list(table) == PHASES, f"the breaker table's phases are {list(table)}")
    if table is not None and list(table) == PHASES and all(rows.values()):
        throttling = table["throttling (429)"]
        check(throttling[2] > 0, "the breaker saw no 429 in the throttling phase (is 429 judged throttled?)")
        check(all(r[1] == 0 for r in table.values()),
              f"a 429 opened the breaker: {[(n, r[1]) for n, r in table.items() if r[1]]}")
        check(int(rows["breaker opens caused by a 429"][0]) == 0, "the summary counts breaker opens caused by a 429")
        opened = re.match(r"(\d+) times", rows["breaker opened"][0])
        check(opened is not None and int(opened.group(1)) == sum(r[0] for r in table.values()),
              "the breaker's opens per phase do not add up to its times_opened")
        seen = int(rows["429s the breaker saw and did not count"][0])
        check(seen == sum(r[2] for r in table.values()), "the breaker's 429s per phase do not add up")
        check(0 < seen <= int(rows["429s received (counted by the upstream)"][0]),
              "the breaker counts more 429s than the upstream sent armor, or none")
        fast = int(rows["failed fast (breaker open, nothing sent)"][0])
        refused = sum(r[3] for r in table.values())
        check(refused > 0, "the breaker refused no call, so its refusal time was not measured")
        check(refused == fast, f"the breaker refused {refused} calls before they sent anything, and {fast}"
              " calls failed fast: they should be the same calls")
        waited = int(rows["breaker refusals the retry layer waited out"][0])
        check(waited == 0, f"the retry layer waited out {waited} refusals of the breaker")
        times = re.match(r"(\d+) / (\d+) µs", rows["refused by the breaker: time to return"][0])
        check(times is not None or refused == 0, "no time to return for the calls the breaker refused")
        if times:
            median, slowest = int(times.group(1)), int(times.group(2))
            check(median <= slowest, "the median time to fail fast is above the maximum")
            check(median < MAX_FAIL_FAST_MEDIAN_US,
                  f"calls refused by the breaker took {median} us (median), not under {MAX_FAIL_FAST_MEDIAN_US} us:"
                  " does the retry layer wait for the open breaker?")

    # The SVG: said where, exists, parses, has its lanes.
    written = re.search(r"^SVG timeline written to (.+)$", out, re.M)
    check(written is not None, "the demo did not say where it wrote the SVG")
    if written:
        check(os.path.isabs(written.group(1)), "the SVG path printed is not absolute")
        check(os.path.samefile(written.group(1), svg) if os.path.exists(svg) else False,
              "the SVG path printed is not the one asked for")
    check(os.path.isfile(svg), f"no SVG at {svg}")
    if os.path.isfile(svg):
        try:
            root = ET.parse(svg).getroot()
        except ET.ParseError as e:
            root = None
            check(False, f"the SVG does not parse as XML: {e}")
        if root is not None:
            check(root.tag == SVG_NS + "svg", f"the SVG's root is {root.tag}")
            groups = {g.get("id"): g for g in root.iter(SVG_NS + "g")}
            for gid in SVG_GROUPS:
                check(gid in groups, f"the SVG has no group '{gid}'")
            if "phases" in groups:
                labels = [t.text or "" for t in groups["phases"].iter(SVG_NS + "text")]
                check(len(labels) == len(PHASES) and all(n in l for n, l in zip(PHASES, labels)),
                      f"the SVG's phase labels are {labels}")
            if "calls" in groups:
                bars = [r for r in groups["calls"].iter(SVG_NS + "rect") if r.get("class") in ("admitted", "rejected")]
                check(bars, "the SVG shows no calls")
            if "clients" in groups:
                kinds = {r.get("class") for r in groups["clients"].iter(SVG_NS + "rect")}
                check({"ok", "failed"} <= kinds, f"the SVG's clients lane shows {kinds}, not successes and failures")
            if "limit" in groups:
                check(any(True for _ in groups["limit"].iter(SVG_NS + "polyline")), "the SVG has no adaptive limit line")
            if "breaker" in groups:
                check(any(r.get("fill") == "#dc2626" for r in groups["breaker"].iter(SVG_NS + "rect")),
                      "the SVG never shows the breaker open")
            if "quota" in groups:
                check(any(True for _ in groups["quota"].iter(SVG_NS + "polyline")), "the SVG has no quota line")

    if failures:
        print("\ncheck_demo.py: FAILED", file=sys.stderr)
        for f in failures:
            print("  - " + f, file=sys.stderr)
        return 1
    print("\ncheck_demo.py: the demo ran and its output checks out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
