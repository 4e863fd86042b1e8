#!/usr/bin/env python3
"""Share of samples under one function, by the first callee below it that is not a wrapper.

Usage: perf script -i perf.data -F ip,sym > stacks.txt
       python3 session_callees.py stacks.txt 'Session<S>::run' [rows]

For each sample whose stack holds the function, the stack below its outermost frame is
walked from the function towards the leaf; generic future wrappers (poll_fn, Pin, drop
glue, closures outside powchain) are skipped, and the sample is counted against the first
other frame, or "(self)" if there is none. Shares are of all samples.
"""

import collections
import re
import sys


def samples(path):
    stack = []
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip()
        if not line.strip():
            if stack:
                yield stack
                stack = []
            continue
        parts = line.strip().split(None, 1)
        stack.append(parts[1] if len(parts) > 1 else "?")
    if stack:
        yield stack


def main():
    path, function = sys.argv[1], sys.argv[2]
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    wrappers = ["PollFn", "poll_fn", "core::future", "Pin<", "{{", "drop_in_place"]
    counts = collections.Counter()
    total = under = 0
    for stack in samples(path):
        total += 1
        at = [index for index, frame in enumerate(stack) if function in frame]
        if not at:
            continue
        under += 1
        below = [re.sub(r"::\{\{closure\}\}", "", frame) for frame in stack[: at[-1]]][::-1]
        name = "(self)"
        for frame in below:
            if any(mark in frame for mark in wrappers) and "powchain" not in frame:
                continue
            name = frame[:120]
            break
        counts[name] += 1
    print(f"{function}: {100 * under / total:.1f}% of {total} samples")
    for name, count in counts.most_common(rows):
        print(f"{100 * count / total:5.1f}% {name}")


if __name__ == "__main__":
    main()
