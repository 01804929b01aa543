#!/usr/bin/env python3
"""Checks the Grafana dashboard shipped in docs/grafana/armor.json.

  1. it parses as JSON, with a title, a uid and panels that each have a title;
  2. every metric name its queries use is one armor exports: the families of
     a real exposition of every stats type (plus _bucket, _sum and _count of
     each histogram), written by armor_fmt_tests' hidden test [.exposition],
     so the list cannot drift from the code;
  3. docs/grafana/armor-layout.svg, the layout drawn for the docs, names
     every panel;
  4. it shows what the dashboard promises (docs/observability.md): breaker
     states, refusals, retries, quota use against limits, and latency
     percentiles from the histograms (histogram_quantile over _bucket).

Usage: check_grafana.py <repository root> <armor_fmt_tests executable>.
Exits 1 with one line per breach.
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

root = pathlib.Path(sys.argv[1])
fmt_tests = sys.argv[2]
errors = []

# 2. The families armor exports, from a real exposition.
with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / "exposition.txt"
    env = dict(os.environ, ARMOR_EXPOSITION_OUT=str(out))
    run = subprocess.run([fmt_tests, "[.exposition]"], env=env, capture_output=True, text=True, timeout=60)
    if run.returncode != 0 or not out.exists():
        sys.exit(f"{fmt_tests} [.exposition] failed ({run.returncode}):\n{run.stdout}{run.stderr}")
    exposition = out.read_text()
exported = set()
for m in re.finditer(r"^# TYPE (\S+) (\S+)$", exposition, re.M):
    name, kind = m.group(1), m.group(2)
    if kind == "histogram":
        exported.update(name + s for s in ("_bucket", "_sum", "_count"))
    else:
        exported.add(name)
if len(exported) < 50:
    sys.exit(f"the exposition names only {len(exported)} families: is [.exposition] the one of every stats type?")

# 1. The dashboard parses.
path = root / "docs" / "grafana" / "armor.json"
try:
    dash = json.loads(path.read_text())
except (OSError, ValueError) as e:
    sys.exit(f"{path}: {e}")
for key in ("title", "uid", "panels"):
    if not dash.get(key):
        errors.append(f"{path.name}: no {key}")


def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


exprs = []
for p in panels(dash.get("panels", [])):
    if not p.get("title"):
        errors.append(f"{path.name}: panel {p.get('id')} has no title")
    for t in p.get("targets", []):
        if "expr" in t:
            exprs.append((p.get("title", "?"), t["expr"]))
if not exprs:
    errors.append(f"{path.name}: no query")

# The metric names of a PromQL expression: identifiers once strings, label
# matchers ({...}), ranges ([...]) and grouping clauses (by/without/on/
# ignoring/group_left/group_right (...)) are removed, that are not
# functions (followed by "(") nor keywords.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
            "inf", "nan"}


def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        if m.group(2) or m.group(1).lower() in KEYWORDS:
            continue
        names.add(m.group(1))
    return names


used = set()
for title, expr in exprs:
    names = metric_names(expr)
    if not names:
        errors.append(f"{path.name}: panel \"{title}\": no metric in {expr!r}")
    for n in sorted(names):
        used.add(n)
        if n not in exported:
            errors.append(f"{path.name}: panel \"{title}\": {n} is not a family armor exports ({expr!r})")

# The layout drawn for docs/observability.md names every panel of the JSON
# (redraw it when panels change).
svg = root / "docs" / "grafana" / "armor-layout.svg"
drawn = svg.read_text() if svg.exists() else ""
for p in panels(dash.get("panels", [])):
    title = p.get("title", "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if title and f">{title}<" not in drawn:
        errors.append(f"{svg.name}: panel \"{p.get('title')}\" is not drawn (redraw it: docs/grafana/draw_layout.py)")

# 3. What the dashboard promises.
promised = {
    "breaker states": lambda: "armor_circuit_breaker_state" in used,
    "refusals": lambda: sum(1 for n in used if n.endswith(("_rejected_total", "_refused_total"))) >= 5,
    "retries": lambda: "armor_retry_attempts_total" in used,
    "quota use against limits": lambda: any("armor_quota_used / armor_quota_limit" in e for _, e in exprs),
    "latency percentiles": lambda: any(re.search(r"histogram_quantile\(0\.95,.*armor_call_duration_seconds_bucket", e)
                                       for _, e in exprs),
}
for what, ok in promised.items():
    if not ok():
        errors.append(f"{path.name}: shows no {what}")

for e in errors:
    print(e)
if not errors:
    print(f"{path.name}: {len(exprs)} queries over {len(used)} metrics, all exported by armor ({len(exported)} names)")
sys.exit(1 if errors else 0)
