#!/usr/bin/env python3
"""Checks that the code a reader is shown is code a test compiles.

Every public header under include/armor (not detail/) opens with a short
comment: what it defines, one example, a link to its doc. This script checks
that comment and ties its example to a test, so the two cannot drift:

  1. the top comment (the `//` lines before the first other line) is at most
     MAX_LINES lines long: proofs and catalogues belong in docs/;
  2. it names its doc (`docs/<name>.md`, optionally `#anchor`, or
     README.md), and that file and anchor exist;
  3. it shows exactly one example: one block of lines indented four spaces
     past `// ` and preceded by an empty `//` line, as Markdown reads an
     indented code block. A header with no example must be an umbrella that
     says so (the word "umbrella" in its comment) and includes others;
  4. the example appears verbatim (the comment markers and a constant
     indentation aside) in the test source of its header's group, after the
     marker line `// header example: <armor/...>` and before the next marker:

       core    tests/test_header_examples.cpp          (armor_tests)
       asio    tests/asio/test_header_examples.cpp     (armor_asio_tests)
       fmt     tests/fmt/test_header_examples.cpp      (armor_fmt_tests)
       sqlite  tests/sqlite/test_header_examples.cpp   (armor_sqlite_tests)
       redis   tests/redis/test_header_examples.cpp    (armor_redis_tests)
       prometheus_cpp  tests/prometheus_cpp/test_header_examples.cpp

     (groups as tests/CMakeLists.txt's header check names them, by the
     header's name or by a header its example includes). `#include` lines of
     an example are not looked for in that place: the test file must include
     the header instead. Every marker must name a public header that has an
     example;
  5. README.md's first ```cpp block appears the same way in
     tests/fmt/test_readme.cpp;
  6. a code block in docs/*.md announced as an excerpt, by the line
     `<!-- excerpt: <path> -->` just before its opening fence, appears in
     that file (an example CTest builds and runs): its lines verbatim, a
     constant indentation aside, and consecutive except where the block
     has a line `// ...`, which stands for lines left out. The pieces
     between such lines appear in the file in the block's order.

Usage: check_examples.py <repository root>. Exits 1 with one line per breach.
"""
import pathlib
import re
import sys

MAX_LINES = 25

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
inc = root / "include" / "armor"
public = sorted(p for p in inc.rglob("*.hpp") if "detail" not in p.relative_to(inc).parts)

# The optional dependency a header needs, by its name (tests/CMakeLists.txt).
groups = [
    ("prometheus_cpp", r"(^|/)prometheus_cpp([/_.])"),  # before fmt, whose pattern it also matches
    ("asio", r"(^|/)asio([/_.])"),
    ("fmt", r"(^|/)(fmt|prometheus)([/_.])"),
    ("sqlite", r"(^|/)sqlite([/_.])"),
    ("redis", r"(^|/)redis([/_.])"),
]
test_files = {
    "core": root / "tests" / "test_header_examples.cpp",
    "asio": root / "tests" / "asio" / "test_header_examples.cpp",
    "fmt": root / "tests" / "fmt" / "test_header_examples.cpp",
    "sqlite": root / "tests" / "sqlite" / "test_header_examples.cpp",
    "redis": root / "tests" / "redis" / "test_header_examples.cpp",
    "prometheus_cpp": root / "tests" / "prometheus_cpp" / "test_header_examples.cpp",
}
MARKER = re.compile(r"^\s*// header example: <(armor/[\w/]+\.hpp)>\s*$")
INCLUDE = re.compile(r"^#include\s+<([\w/.]+)>")

errors = []


def group_of(name):
    for g, rx in groups:
        if re.search(rx, name):
            return g
    return "core"


def top_comment(path):
    """The text of the leading `//` lines, markers stripped (`// x` -> `x`)."""
    out = []
    for line in path.read_text().splitlines():
        if not line.startswith("//"):
            break
        text = line[2:]
        out.append(text[1:] if text.startswith(" ") else text)
    return out


def indent(s):
    return len(s) - len(s.lstrip(" "))


def code_blocks(lines):
    """Markdown's indented code blocks: after an empty line, lines indented by
    four or more spaces, with the empty lines between them."""
    blocks = []
    i = 0
    while i < len(lines):
        if (i == 0 or lines[i - 1].strip() == "") and lines[i].strip() and indent(lines[i]) >= 4:
            block = []
            while i < len(lines) and (lines[i].strip() == "" or indent(lines[i]) >= 4):
                block.append(lines[i])
                i += 1
            while block and block[-1].strip() == "":
                block.pop()
            blocks.append(block)
        else:
            i += 1
    return blocks


def dedent(block):
    n = min(indent(l) for l in block if l.strip())
    return [l[n:].rstrip() if l.strip() else "" for l in block]


def split_includes(block):
    """The example without its #include lines (and the empty lines around
    them at its start), and the headers those lines name."""
    includes = [m.group(1) for m in (INCLUDE.match(l) for l in block) if m]
    body = [l for l in block if not INCLUDE.match(l)]
    while body and body[0] == "":
        body.pop(0)
    return body, includes


def matched(example, source_lines):
    """How many leading lines of `example` (dedented lines) appear at best in
    `source_lines` as consecutive lines, each shifted right by one same
    number of spaces: len(example) when all of it does."""
    best = 0
    first = example[0]
    for start, line in enumerate(source_lines):
        if line.rstrip() != " " * (indent(line) - indent(first)) + first:
            continue
        shift = " " * (indent(line) - indent(first))
        n = 0
        for e, s in zip(example, source_lines[start:]):
            if (s.rstrip() != shift + e) if e else s.strip() != "":
                break
            n += 1
        best = max(best, n)
    return best


def differs(example, source_lines):
    """None when `example` appears in `source_lines`; otherwise a note on
    the first line that does not."""
    n = matched(example, source_lines)
    if n == len(example):
        return None
    return f"first difference at its line {n + 1}: {example[n].strip()!r}"


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def doc_anchors(doc):
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", doc.read_text(), re.M)}


def check_links(rel, comment_text):
    links = re.findall(r"\b(docs/[\w.-]+\.md|README\.md)(#[\w-]+)?", comment_text)
    if not links:
        errors.append(f"{rel}: the top comment names no doc (docs/<name>.md or README.md)")
    for doc, anchor in links:
        path = root / doc
        if not path.is_file():
            errors.append(f"{rel}: the top comment names {doc}, which does not exist")
        elif anchor and anchor[1:] not in doc_anchors(path):
            errors.append(f"{rel}: the top comment names {doc}{anchor}, a heading {doc} does not have")


# The sections of each group's test source, by the header their marker names.
sections = {}
for g, path in test_files.items():
    if not path.is_file():
        continue
    lines = path.read_text().splitlines()
    current = None
    for line in lines:
        m = MARKER.match(line)
        if m:
            current = m.group(1)
            if current in sections:
                errors.append(f"{path.relative_to(root)}: a second marker for <{current}>")
            sections[current] = (g, path, [])
        elif current:
            sections[current][2].append(line)


def includes_of(path):
    return {m.group(1) for m in (INCLUDE.match(l) for l in path.read_text().splitlines()) if m}


shown = set()
for h in public:
    name = h.relative_to(root / "include").as_posix()
    rel = h.relative_to(root)
    comment = top_comment(h)
    if len(comment) > MAX_LINES:
        errors.append(f"{rel}: the top comment is {len(comment)} lines; keep it to {MAX_LINES} "
                      "(what the header defines, one example, a link to its doc)")
    check_links(rel, "\n".join(comment))
    blocks = code_blocks(comment)
    if not blocks:
        umbrella = re.search(r"\bumbrella\b", "\n".join(comment), re.I)
        if not umbrella or not re.search(r"^#include <armor/", h.read_text(), re.M):
            errors.append(f"{rel}: the top comment shows no example (only an umbrella header that "
                          "says so may have none)")
        continue
    if len(blocks) > 1:
        errors.append(f"{rel}: the top comment shows {len(blocks)} examples; keep one")
    # The header's own group, or that of a header its example includes
    # (hedge.hpp's example needs asio.hpp).
    g = group_of(name)
    for block in blocks:
        for inc_name in split_includes(dedent(block))[1]:
            if g == "core":
                g = group_of(inc_name)
    want = test_files[g]
    if name not in sections:
        errors.append(f"{rel}: its example is not in {want.relative_to(root)} "
                      f"(no `// header example: <{name}>` line there)")
        continue
    sg, path, section = sections[name]
    shown.add(name)
    if sg != g:
        errors.append(f"{path.relative_to(root)}: the example of <{name}> belongs in {want.relative_to(root)}")
    for block in blocks:
        body, includes = split_includes(dedent(block))
        note = differs(body, section) if body else None
        if note:
            errors.append(f"{rel}: its example differs from the one compiled in {path.relative_to(root)} "
                          f"(under `// header example: <{name}>`; {note}); make them the same")
        for inc_name in includes:
            if inc_name not in includes_of(path):
                errors.append(f"{path.relative_to(root)}: does not #include <{inc_name}>, as the example of "
                              f"<{name}> does")

for name, (g, path, _) in sorted(sections.items()):
    if name not in shown:
        errors.append(f"{path.relative_to(root)}: a marker for <{name}>, which is not a public header "
                      "with an example")

# README.md's first C++ block, compiled by tests/fmt/test_readme.cpp.
readme = (root / "README.md").read_text()
m = re.search(r"^```cpp\n(.*?)^```", readme, re.M | re.S)
if not m:
    errors.append("README.md: no ```cpp block")
else:
    test_readme = root / "tests" / "fmt" / "test_readme.cpp"
    body, includes = split_includes(dedent(m.group(1).rstrip("\n").splitlines()))
    note = differs(body, test_readme.read_text().splitlines())
    if note:
        errors.append(f"README.md: its first example differs from the one compiled in tests/fmt/test_readme.cpp "
                      f"({note})")
    for inc_name in includes:
        if inc_name not in includes_of(test_readme):
            errors.append(f"tests/fmt/test_readme.cpp: does not #include <{inc_name}>, as README.md's example does")



# Excerpts in docs/*.md of files CTest builds (examples/*.cpp).
EXCERPT = re.compile(r"^<!--\s*excerpt:\s*(\S+)\s*-->\s*$")
ELISION = "// ..."


def found_at(piece, source_lines, start):
    """The index of the first line at or after `start` where `piece`
    (dedented lines) appears as consecutive lines of `source_lines`, each
    shifted right by one same number of spaces; None if it does not."""
    first = piece[0]
    for i in range(start, len(source_lines)):
        line = source_lines[i]
        shift = " " * (indent(line) - indent(first))
        if line.rstrip() != shift + first:
            continue
        window = source_lines[i:i + len(piece)]
        if len(window) == len(piece) and all(
                (s.rstrip() == shift + e) if e else s.strip() == "" for e, s in zip(piece, window)):
            return i
    return None


excerpts = 0
for doc in sorted((root / "docs").glob("*.md")):
    lines = doc.read_text().splitlines()
    for n, line in enumerate(lines):
        m = EXCERPT.match(line)
        if not m:
            continue
        where = f"{doc.relative_to(root)}:{n + 1}"
        src = root / m.group(1)
        if not src.is_file():
            errors.append(f"{where}: an excerpt of {m.group(1)}, which does not exist")
            continue
        if n + 1 >= len(lines) or not lines[n + 1].startswith("```"):
            errors.append(f"{where}: an excerpt marker must be followed at once by a ``` code block")
            continue
        end = next((k for k in range(n + 2, len(lines)) if lines[k].startswith("```")), None)
        if end is None:
            errors.append(f"{where}: the excerpt's code block is not closed")
            continue
        block = lines[n + 2:end]
        pieces, piece = [], []
        for b in block + [ELISION]:
            if b.strip() == ELISION:
                while piece and not piece[-1].strip():
                    piece.pop()
                while piece and not piece[0].strip():
                    piece.pop(0)
                if piece:
                    pieces.append(dedent(piece))
                piece = []
            else:
                piece.append(b)
        if not pieces:
            errors.append(f"{where}: an empty excerpt")
            continue
        source_lines = src.read_text().splitlines()
        at = 0
        for k, p in enumerate(pieces):
            i = found_at(p, source_lines, at)
            if i is None:
                alone = found_at(p, source_lines, 0)
                if alone is not None:
                    why = "appears there, but before the piece ahead of it"
                else:
                    why = f"first difference at its line {matched(p, source_lines) + 1}: " \
                          f"{p[min(matched(p, source_lines), len(p) - 1)].strip()!r}"
                errors.append(f"{where}: piece {k + 1} of the excerpt is not in {m.group(1)} ({why}); "
                              "make the doc and the file the same")
                break
            at = i + len(p)
        excerpts += 1

for e in errors:
    print(e)
print(f"check_examples: {len(public)} public headers, {len(shown)} examples compiled, "
      f"{excerpts} doc excerpts, {len(errors)} problems")
sys.exit(1 if errors else 0)
