#!/usr/bin/env python3
"""Runs the armor demo briefly and checks what it printed and the SVG it wrote.

    check_demo.py <armor_demo executable> <svg path> [extra demo arguments]

The demo runs with --quick --no-color --svg <svg path>. The check fails when
the demo exits non-zero, misses a phase, a summary row or the SVG line, when
its numbers do not add up, or when the SVG is missing, is not XML, or lacks
one of its lanes.
"""
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

PHASES = ["healthy", "failing (500)", "throttling (429)", "slow", "healthy again"]
SUMMARY_ROWS = [
    "calls",
    "succeeded",
    "failed after sending",
    "failed fast (breaker open, nothing sent)",
    "not sent (no token in time, deadline)",
    "refused by the quota",
    "requests the upstream received",
    "retries",
    "429s received (counted by the upstream)",
    "breaker opened",
    "quota used",
]
SVG_GROUPS = ["phases", "breaker", "calls", "quota", "axis", "legend"]
SVG_NS = "{http://www.w3.org/2000/svg}"

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def summary_value(out, name):
    """The two columns of a summary row, as strings (with armor, without)."""
    m = re.search(r"^  " + re.escape(name) + r" {2,}(\S.*?) {2,}(\S+)\s*$", out, re.M)
    return (m.group(1), m.group(2)) if m else None


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    exe, svg = sys.argv[1], sys.argv[2]
    if os.path.exists(svg):
        os.remove(svg)
    cmd = [exe, "--quick", "--no-color", "--svg", svg] + sys.argv[3:]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=100)
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
    ticks = re.findall(r"^\s+\d+\.\d\ds  \|\s+\d+ ok, \d+ failed, \d+ failed fast, \d+ not sent \| upstream sent", out,
                       re.M)
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
        parts = [int(rows[n][0]) for n in ("succeeded", "failed after sending",
                                            "failed fast (breaker open, nothing sent)",
                                            "not sent (no token in time, deadline)", "refused by the quota")]
        check(calls > 0, "no calls were made")
        check(calls == plain_calls, f"the two clients made {calls} and {plain_calls} calls")
        check(sum(parts) == calls, f"succeeded + failed + refused = {sum(parts)}, not {calls} calls")
        check(int(rows["succeeded"][1]) + int(rows["failed after sending"][1]) == plain_calls,
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
