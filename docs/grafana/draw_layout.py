#!/usr/bin/env python3
"""Draws docs/grafana/armor-layout.svg from docs/grafana/armor.json: each
panel at its grid position with its title and its series' legends (the
layout, not data). Run it from anywhere after changing the dashboard;
tests/shape/check_grafana.py fails when a panel is missing from the drawing.
"""
import html
import json
import pathlib

here = pathlib.Path(__file__).resolve().parent
d = json.loads((here / "armor.json").read_text())
COLUMNS, CELL, ROW = 24, 40, 30  # Grafana's 24 columns; px per column and per grid row
maxy = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in d["panels"])
width, height = COLUMNS * CELL + 20, maxy * ROW + 60
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
       f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
       f'<rect width="{width}" height="{height}" fill="#111217"/>',
       f'<text x="10" y="28" fill="#ccccdc" font-size="18">{html.escape(d["title"])} (panel layout)</text>']
for p in d["panels"]:
    g = p["gridPos"]
    x, y, w, h = 10 + g["x"] * CELL, 40 + g["y"] * ROW, g["w"] * CELL, g["h"] * ROW
    if p["type"] == "row":
        out.append(f'<text x="{x}" y="{y + 20}" fill="#ccccdc" font-size="15" font-weight="bold">'
                   f'{html.escape(p["title"])}</text>')
        continue
    out.append(f'<rect x="{x + 3}" y="{y + 3}" width="{w - 6}" height="{h - 6}" rx="3" fill="#181b1f" stroke="#2c3235"/>')
    out.append(f'<text x="{x + 12}" y="{y + 24}" fill="#ccccdc" font-size="12">{html.escape(p["title"])}</text>')
    legends = [t["legendFormat"] for t in p["targets"]]
    room = (h - 50) // 14
    for i, legend in enumerate(legends[:room]):
        out.append(f'<text x="{x + 14}" y="{y + 46 + i * 14}" fill="#8e8e9e" font-size="11">• {html.escape(legend)}</text>')
    if len(legends) > room:
        out.append(f'<text x="{x + 14}" y="{y + 46 + room * 14}" fill="#8e8e9e" font-size="11">… '
                   f'{len(legends) - room} more</text>')
out.append("</svg>")
(here / "armor-layout.svg").write_text("\n".join(out) + "\n")
