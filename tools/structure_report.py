#!/usr/bin/env python3
"""Structure figures of the crate (issue 15's before/after): lines per
module, the longest functions, import circles between top-level modules
(and between files inside one), imports that go up against the layer order
of the module map in src/lib.rs, and the count of repeated blocks
(`duplicates`, when that command is on PATH).

    python3 tools/structure_report.py [--top N]
"""
import os
import re
import subprocess
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
TOP = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 15


def rust_files():
    for d, _, files in os.walk(SRC):
        for f in sorted(files):
            if f.endswith(".rs"):
                yield os.path.join(d, f)


def module_of(path):
    """src/proxy/conn.rs -> proxy::conn; src/proxy/mod.rs -> proxy."""
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return "crate"
    return "::".join(rel)


def code_lines(text):
    """Lines before the first `#[cfg(test)]` module (production code)."""
    cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests", text, re.M)
    return text[: cut.start()] if cut else text


def functions(text):
    """(name, first line, length) of every `fn` with a body."""
    out = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"\s*(pub(\([^)]*\))?\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)", lines[i])
        if not m:
            i += 1
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            # Braces inside char/byte literals ('{', b'}') and strings do not count.
            code = re.sub(r"b?'(\\.|[^'\\])'", "''", lines[j])
            code = re.sub(r'"(\\.|[^"\\])*"', '""', code)
            for ch in code:
                if ch == "{":
                    depth += 1
                    started = True
                elif ch == "}":
                    depth -= 1
            if ";" in lines[j] and not started and lines[j].rstrip().endswith(";"):
                break
            if started and depth <= 0:
                out.append((m.group(5), i + 1, j - i + 1))
                break
            j += 1
        i += 1
    return out


def paths_after(prefix, text):
    """Every path used after `prefix::`, as a list of segments, with use
    groups expanded: `crate::{a, b::{c, d}}` -> [a], [b, c], [b, d]."""
    out = []
    for m in re.finditer(r"(?<!::)\b" + prefix + r"::", text):
        out.extend(expand(text, m.end()))
    return [p for p in out if p]


def expand(text, i):
    """Paths starting at text[i] (just after a `::`)."""
    if text.startswith("{", i):
        depth, j = 0, i
        while j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                break
            j += 1
        inner, out, start, depth = text[i + 1 : j], [], 0, 0
        for k, ch in enumerate(inner + ","):
            depth += {"{": 1, "}": -1}.get(ch, 0)
            if ch == "," and depth == 0:
                part = inner[start:k].strip()
                start = k + 1
                m = re.match(r"(\w+)((?:::\w+)*)(::)?", part)
                if not m:
                    continue
                if m.group(1) == "self":  # `b::{self, c}` names b itself
                    out.append([])
                    continue
                head = [m.group(1)] + [p for p in m.group(2).split("::") if p]
                if m.group(3):  # a nested group: b::{c, d}
                    out.extend(head + rest for rest in expand(part, m.end()))
                else:
                    out.append(head)
        return out
    m = re.match(r"(\w+)((?:::\w+)*)(::\{)?", text[i:])
    if not m:
        return []
    head = [m.group(1)] + [p for p in m.group(2).split("::") if p]
    if m.group(3):
        return [head + rest for rest in expand(text, i + m.end() - 1)]
    return [head]


def reexports_of(files):
    """(module, item) -> the child module a `pub use child::Item` (or
    `pub use child::{Item, ...}`) in that module's file points at."""
    reexports = {}
    for mod, prod in files.items():
        for m in re.finditer(r"^\s*pub\s+use\s+(?:self::)?(\w+)::", prod, re.M):
            for path in expand(prod, m.end()):
                if m.group(1) not in ("crate", "super", "std") and path:
                    child = f"{mod}::{m.group(1)}" if mod != "crate" else m.group(1)
                    reexports[(mod, path[-1])] = child
    return reexports


def resolve(module, segs, files, reexports):
    """The file module that `module::segs...` names: a file of that module,
    or the file that defines (or, through re-exports, really defines) the
    item."""
    while segs:
        child = f"{module}::{segs[0]}"
        if child in files:
            module, segs = child, segs[1:]
            continue
        if (module, segs[0]) in reexports:
            module = reexports[(module, segs[0])]
            continue
        break
    return module


def main():
    per_module = {}
    longest = []
    edges = defaultdict(set)
    file_edges = defaultdict(set)
    files = {}
    for path in rust_files():
        text = open(path, encoding="utf-8").read()
        prod = code_lines(text)
        mod = module_of(path)
        files[mod] = prod
        per_module[mod] = (text.count("\n"), prod.count("\n"))
        for name, line, n in functions(prod):
            longest.append((n, f"{os.path.relpath(path, ROOT)}:{line}", name))
    reexports = reexports_of(files)
    for mod, prod in files.items():
        top = mod.split("::")[0]
        for parts in paths_after("crate", prod):
            if parts[0] != top and mod != "crate":
                edges[top].add(parts[0])
            # Inside one top-level module: file -> the file it names.
            if parts[0] == top and "::" in mod:
                target = resolve(top, parts[1:], files, reexports)
                if target != mod:
                    file_edges[mod].add(target)
        # A folder's mod.rs (or any file with children) naming a child by
        # its relative path: `use children::Children`, `upgrade::run()`.
        # `pub use child::Item` only re-exports (resolved above), so it is
        # not counted as a use.
        used_here = re.sub(r"^\s*pub(?:\([^)]*\))?\s+use\s[^;]*;", "", prod, flags=re.M)
        for child in {m.split("::")[-1] for m in files if m.rsplit("::", 1)[0] == mod and "::" in m}:
            if re.search(r"(?<![\w:])(?:self::)?" + child + r"::", used_here):
                file_edges[mod].add(f"{mod}::{child}")
        if "::" in mod:
            parent = mod.rsplit("::", 1)[0]
            for parts in paths_after("super", prod):
                base = parent
                while parts and parts[0] == "super" and "::" in base:
                    base, parts = base.rsplit("::", 1)[0], parts[1:]
                target = resolve(base, parts, files, reexports)
                if target != mod:
                    file_edges[mod].add(target)

    print("== lines per module (all / before the tests)")
    for mod, (total, prod) in sorted(per_module.items(), key=lambda kv: -kv[1][0]):
        print(f"{total:6d} {prod:6d}  {mod}")
    print(f"{sum(t for t, _ in per_module.values()):6d} total in {len(per_module)} files")

    print(f"\n== the {TOP} longest functions (lines)")
    for n, where, name in sorted(longest, reverse=True)[:TOP]:
        print(f"{n:5d}  {name}  {where}")

    print("\n== import circles between top-level modules")
    circles = set()
    for a in edges:
        for b in edges[a]:
            if a in edges.get(b, ()):
                circles.add(tuple(sorted((a, b))))
    longer = find_cycles(edges)
    for a, b in sorted(circles):
        print(f"  {a} <-> {b}")
    for c in longer:
        if len(c) > 2:
            print("  " + " -> ".join(c + [c[0]]))
    if not circles and not longer:
        print("  none")
    print("\n== upward imports (against the layer order of src/lib.rs's module map)")
    lib = open(os.path.join(SRC, "lib.rs"), encoding="utf-8").read()
    order = re.findall(r"^//! - `(\w+)`", lib, re.M)
    upward = sorted(
        (a, b)
        for a in edges
        for b in edges[a]
        if a in order and b in order and order.index(b) < order.index(a)
    )
    for a, b in upward:
        print(f"  {a} -> {b}")
    unlisted = sorted({m.split("::")[0] for m in per_module} - set(order) - {"crate"})
    if unlisted:
        print(f"  not in the map: {', '.join(unlisted)}")
    if not upward and not unlisted:
        print(f"  none ({len(order)} modules in the map)")

    print("\n== import circles between files of one module")
    print("   (a file using an item of its folder's mod.rs counts as using mod.rs)")
    fc = set()
    for a in file_edges:
        for b in file_edges[a]:
            if a in file_edges.get(b, ()) and a != b:
                fc.add(tuple(sorted((a, b))))
    for a, b in sorted(fc):
        print(f"  {a} <-> {b}")
    flonger = [c for c in find_cycles(file_edges) if len(c) > 2]
    for c in flonger:
        print("  " + " -> ".join(c + [c[0]]))
    if not fc and not flonger:
        print("  none")

    print("\n== repeated blocks of six or more lines (duplicates)")
    try:
        out = subprocess.run(
            ["duplicates", "--repo", ROOT, "--most", "1", "--seconds", "60"],
            capture_output=True, text=True, timeout=120,
        ).stdout
        print("  " + out.strip().split("\n")[0])
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"  duplicates not available: {e}")


def find_cycles(edges):
    """Elementary cycles of length > 2 (small graph: a DFS per node)."""
    found = []
    nodes = sorted(set(edges) | {b for v in edges.values() for b in v})
    for start in nodes:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(edges.get(node, ())):
                if nxt == start and len(path) > 2 and min(path) == start:
                    found.append(path)
                elif nxt not in path and nxt > start:
                    stack.append((nxt, path + [nxt]))
    return found


if __name__ == "__main__":
    main()
