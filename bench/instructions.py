#!/usr/bin/env python3
"""Reads a callgrind dump: instructions per message, the functions that execute most of them (their
own instructions), and who calls memcpy (instructions spent copying, by caller).

usage: bench/instructions.py [--per-call FUNCTION] <callgrind.out.N> <messages> [top] [title]

--per-call FUNCTION: divide by the number of calls of FUNCTION (a substring of its name) instead of
<messages>: e.g. session_push_message for instructions per push queued.
"""
import re
import sys
from collections import Counter

NAME = re.compile(r"^(c?)(ob|fn)=\((\d+)\)(?: (.*))?$")
COST = re.compile(r"^(?:[+-]?\d+|\*) (\d+)$")


def parse(path):
    names, objects = {}, {}
    own, copies, calls = Counter(), Counter(), Counter()
    where = {}
    fn = ob = callee = None
    after_calls = False
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            m = NAME.match(line)
            if m:
                called, kind, key, name = m.groups()
                table = names if kind == "fn" else objects
                if name:
                    table[key] = name
                if kind == "ob" and not called:
                    ob = objects.get(key)
                elif kind == "fn" and not called:
                    fn = names[key]
                    where.setdefault(fn, ob)
                elif kind == "fn":
                    callee = names[key]
                continue
            if line.startswith("calls="):
                after_calls = True
                if callee:
                    calls[callee] += int(line[6:].split()[0])
                continue
            m = COST.match(line)
            if not m:
                continue
            if after_calls:
                # The inclusive cost of the call just described.
                if callee and "memcpy" in callee:
                    copies[fn] += int(m.group(1))
                after_calls = False
            elif fn:
                own[fn] += int(m.group(1))
    return own, copies, where, calls


def main():
    per_call = None
    if len(sys.argv) > 2 and sys.argv[1] == "--per-call":
        per_call = sys.argv[2]
        del sys.argv[1:3]
    if len(sys.argv) < 3:
        print(__doc__.strip())
        return 2
    own, copies, where, calls = parse(sys.argv[1])
    n = int(sys.argv[2])
    if per_call:
        n = sum(v for name, v in calls.items() if per_call in name)
        print(f"calls of {per_call}: {n:,}")
        if n == 0:
            return 1
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    if len(sys.argv) > 4:
        print(sys.argv[4])
    total = sum(own.values())
    print(f"instructions per message: {total / n:,.0f}")
    print("\nown instructions per message, by function:")
    for name, v in own.most_common(top):
        lib = (where.get(name) or "").rsplit("/", 1)[-1]
        print(f"  {v / n:>10,.0f}  {100 * v / total:5.1f} %  {name[:80]}  [{lib}]")
    print("\nmemcpy instructions per message, by caller:")
    for name, v in copies.most_common(6):
        print(f"  {v / n:>10,.0f}  {name[:80]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
