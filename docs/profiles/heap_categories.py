#!/usr/bin/env python3
"""Sorts a heaptrack peak-memory stack file into what holds the memory.

    heaptrack -o run powchain simulate ...        # a build without jemalloc: heaptrack
                                                  # sees only the system allocator
    heaptrack_print run.zst --flamegraph-cost-type peak -F run.stacks
    python3 heap_categories.py run.stacks

Each stack counts once, for the first category (in the order below) whose marker it
contains; the markers are source file names as heaptrack prints them.
"""
import collections
import sys

CATEGORIES = [
    ("the store's chunks (SparseMemoryBackend)", "(memory_backend.rs)"),
    ("what each peer is known to have (KnownInventory)", "(inventory.rs)"),
    ("the store's file (redb's InMemoryBackend)", "(backends.rs)"),
    ("other bounded sets (the relay's recent transactions, the signature cache)", "(bounded_set.rs)"),
    ("compact blocks", "(compact"),
    ("the pool", "mempool"),
    ("sessions", "(session.rs)"),
    ("the block index", "(index.rs)"),
    ("the coin cache", "(overlay.rs)"),
    ("the simulated users", "(payments.rs)"),
    ("outboxes", "(outbox.rs)"),
]


def main(path):
    totals = collections.Counter()
    whole = 0
    for line in open(path):
        stack, _, value = line.rstrip("\n").rpartition(" ")
        try:
            value = int(value)
        except ValueError:
            continue
        whole += value
        for name, marker in CATEGORIES:
            if marker in stack:
                totals[name] += value
                break
        else:
            totals["everything else"] += value
    print(f"peak heap {whole / 1e6:.1f} MB")
    for name, value in totals.most_common():
        print(f"{value / 1e6:8.1f} MB  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
