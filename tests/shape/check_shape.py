#!/usr/bin/env python3
"""Checks the rules of armor's one policy shape that a compiler cannot see.

  1. every public enumeration has a `to_string` in its own header, and is
     listed in tests/fmt/test_shape.cpp (which formats it with fmt);
  2. every public `*_stats` struct describes its fields (`fields()`), and is
     listed in tests/fmt/test_shape.cpp (which exports it with promtool);
  2b. every public `*_event` struct (what listeners receive) and every
     public `*_decision` class is listed in a tests/**/test_*shape.cpp
     (tests/fmt/test_shape.cpp formats each with fmt);
  3. no header under detail/ includes a public header above the ground floor
     (the vocabulary every policy uses);
  4. no doc, example or public header comment names a file under detail/:
     what a user reads never sends them into the internals.

Usage: check_shape.py <repository root>. Exits 1 with one line per breach.
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
inc = root / "include" / "armor"
public = sorted(p for p in inc.rglob("*.hpp") if "detail" not in p.relative_to(inc).parts)
detail = sorted((inc / "detail").glob("*.hpp"))
# tests/fmt/test_shape.cpp for the core; tests/<integration>/test_*_shape.cpp
# for the headers that need a library (SQLite, Redis).
shape_test = "\n".join(p.read_text() for p in sorted((root / "tests").rglob("test_*shape.cpp")))

# The ground floor: headers with no policy in them, which detail/ may use.
ground = {"clock.hpp", "context.hpp", "decision.hpp", "error.hpp", "listener.hpp", "policy.hpp",
          "result.hpp", "stats.hpp", "verdict.hpp", "version.hpp"}


def public_part(text):
    """The text without its `namespace detail { ... }  // namespace detail` blocks."""
    return re.sub(r"namespace detail \{.*?\}  // namespace detail", "", text, flags=re.S)

errors = []

for h in public:
    text = public_part(h.read_text())
    rel = h.relative_to(root)
    for m in re.finditer(r"^\s*enum class (\w+)", text, re.M):
        name = m.group(1)
        if not re.search(r"to_string\(\s*%s\b" % name, text):
            errors.append(f"{rel}: enum {name} has no to_string beside it")
        if not re.search(r"\b%s\b" % name, shape_test):
            errors.append(f"{rel}: enum {name} is not checked in any tests/**/test_*shape.cpp")
    for m in re.finditer(r"^\s*struct (\w+_stats)\s*\{", text, re.M):
        name = m.group(1)
        body = text[m.end():]
        end = re.search(r"^\s*\};", body, re.M)
        if end is None or "fields()" not in body[:end.start()]:
            errors.append(f"{rel}: {name} does not describe its fields (static fields())")
        if not re.search(r"\b%s\b" % name, shape_test):
            errors.append(f"{rel}: {name} is not exported in any tests/**/test_*shape.cpp")

for h in public:
    text = public_part(h.read_text())
    rel = h.relative_to(root)
    for m in re.finditer(r"^\s*(?:template <[^\n]*>\s*)?(?:struct|class) (\w+_event|\w+_decision)\s*\{", text, re.M):
        name = m.group(1)
        if not re.search(r"\b%s\b" % name, shape_test):
            errors.append(f"{rel}: {name} is not formatted in any tests/**/test_*shape.cpp")

for h in detail:
    for m in re.finditer(r'#include <armor/([\w/]+\.hpp)>', h.read_text()):
        target = m.group(1)
        if not target.startswith("detail/") and target not in ground:
            errors.append(f"{h.relative_to(root)}: includes <armor/{target}>, a public header above the ground floor")

readers = list((root / "docs").glob("*.md")) + [root / "README.md"] + list((root / "examples").rglob("*.cpp")) \
    + list((root / "examples").rglob("*.hpp"))
for f in readers:
    for i, line in enumerate(f.read_text().splitlines(), 1):
        if re.search(r"detail/\w+\.hpp", line):
            errors.append(f"{f.relative_to(root)}:{i}: names a file under detail/")
for h in public:
    for i, line in enumerate(h.read_text().splitlines(), 1):
        if line.lstrip().startswith("//") and re.search(r"detail/\w+\.hpp", line):
            errors.append(f"{h.relative_to(root)}:{i}: a comment sends the reader to a file under detail/")

for e in errors:
    print(e)
print(f"check_shape: {len(public)} public headers, {len(detail)} detail headers, {len(errors)} problems")
sys.exit(1 if errors else 0)
