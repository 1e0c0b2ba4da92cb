#!/usr/bin/env python3
"""Lengths of non-test functions in the given crates, longest first: `scripts/fn-lengths.py controllers agent apiserver`."""
import re, sys, pathlib, signal

signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the listing quietly

FN = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?fn\s+(\w+)')

def functions(path):
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip().startswith('#[cfg(test)]'):
            return
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            code = re.sub(r'"([^"\\]|\\.)*"|//.*', '', lines[j])
            if not started and ';' in code and '{' not in code:
                break
            depth += code.count('{') - code.count('}')
            started = started or '{' in code
            if started and depth <= 0:
                yield m.group(5), i + 1, j - i + 1
                break
            j += 1
        i += 1

rows = []
for crate in sys.argv[1:] or ['controllers', 'agent', 'apiserver']:
    for f in sorted(pathlib.Path(crate, 'src').rglob('*.rs')):
        rows += [(n, f"{f}:{line}", name) for name, line, n in functions(f)]
for n, where, name in sorted(rows, reverse=True)[:25]:
    print(f"{n:4} {where} {name}")
