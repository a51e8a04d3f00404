#!/usr/bin/env python3
"""Structure figures of the crate (issue 15's before/after): lines per
module, the longest functions, import circles between top-level modules
(and between files inside one), and the count of repeated blocks
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
            for ch in lines[j]:
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


def main():
    per_module = {}
    longest = []
    edges = defaultdict(set)
    file_edges = defaultdict(set)
    for path in rust_files():
        text = open(path, encoding="utf-8").read()
        prod = code_lines(text)
        mod = module_of(path)
        per_module[mod] = (text.count("\n"), prod.count("\n"))
        for name, line, n in functions(prod):
            longest.append((n, f"{os.path.relpath(path, ROOT)}:{line}", name))
        top = mod.split("::")[0]
        for used in re.findall(r"\bcrate::(\w+)((?:::\w+)*)", prod):
            target = used[0]
            if target != top and mod != "crate":
                edges[top].add(target)
            # Inside one top-level module: file -> sibling file.
            parts = [used[0]] + [p for p in used[1].split("::") if p]
            if parts[0] == top and len(parts) > 1 and "::" in mod:
                file_edges[mod].add(f"{top}::{parts[1]}")
        for sib in re.findall(r"\bsuper::(\w+)", prod):
            if "::" in mod:
                parent = mod.rsplit("::", 1)[0]
                file_edges[mod].add(f"{parent}::{sib}")

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
    print("\n== import circles between files of one module")
    fc = set()
    for a in file_edges:
        for b in file_edges[a]:
            if a in file_edges.get(b, ()) and a != b:
                fc.add(tuple(sorted((a, b))))
    for a, b in sorted(fc):
        print(f"  {a} <-> {b}")
    if not fc:
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
