#!/usr/bin/env python3
"""Sorts the samples of the three node processes of `powchain bench --only network` into
the steps of a payment's way through them, by the outermost frame that names one.

Needs a build with frame pointers and a system-wide profile:
  RUSTFLAGS="-C force-frame-pointers=yes" CARGO_TARGET_DIR=/tmp/fp cargo build --release -p powchain
  perf record -F 499 -g -a -o e2e.data -- /tmp/fp/release/powchain bench --only network \
      --network-payments 20000 --json
  perf script -i e2e.data --no-inline -F comm,pid,tid,time,ip,sym > e2e.script
  python3 end_to_end_categories.py e2e.script 20000 PID1,PID2,PID3

The node processes are the ones with `tokio-rt-worker` threads; each variant starts three,
node 1 first (it takes the payments), node 2 second (it mines), node 3 third.
"""
import collections
import re
import sys

HZ = 499

# (category, a frame that puts a sample in it); the first that matches wins.
CATEGORIES = [
    ("verify signatures", "verify_all"),
    ("mine: template, connect, block JSON answer", "mine_one"),
    ("HTTP: admit a payment, wait for its commit", "submit_transaction"),
    ("peer transactions: admit (no signatures)", "submit_peer_transactions"),
    ("peer blocks: connect, pool removals", "submit_peer_block"),
    ("pool store writer thread", "group_commit::write_loop"),
    ("getdata: look transactions up", "pool_transactions_by"),
    ("block JSON (the bench's POST /mine-transactions)", "BlockJson"),
    ("compact blocks: build and push", "push_compact"),
    ("compact blocks: receive and rebuild", "on_compact_block"),
    ("transactions read off a peer", "on_transactions"),
    ("peer messages: read, decode", "read_frame"),
    ("peer sessions: the rest", "Session"),
    ("relay loop", "relay::"),
    ("HTTP server (hyper, axum)", "hyper::"),
    ("tokio: scheduling, parking, hand-offs", "tokio::runtime"),
]


def samples(path):
    head, frames = None, []
    with open(path) as lines:
        for line in lines:
            if not line.strip():
                if head:
                    yield head, frames
                head, frames = None, []
            elif line[0] not in " \t":
                match = re.match(r"(.+?)\s+(-?\d+)/(-?\d+)\s+([\d.]+):", line)
                head = (match.group(1).strip(), int(match.group(2))) if match else None
            else:
                parts = line.strip().split(" ", 1)
                frames.append(parts[-1])
    if head:
        yield head, frames


def main():
    path, payments, pids = sys.argv[1], int(sys.argv[2]), [int(p) for p in sys.argv[3].split(",")]
    counts = {pid: collections.Counter() for pid in pids}
    for (_, pid), frames in samples(path):
        if pid not in counts:
            continue
        name = next(
            (name for name, key in CATEGORIES if any(key in frame for frame in frames)),
            "other (kernel, allocator, threads outside tokio)",
        )
        counts[pid][name] += 1
    for number, pid in enumerate(pids, start=1):
        total = sum(counts[pid].values())
        print(f"== node {number} (pid {pid}): {total} samples, "
              f"{total / HZ / payments * 1e6:.0f} µs of CPU a payment")
        for name, count in counts[pid].most_common():
            print(f"  {count:5d} {100 * count / total:5.1f}%  {count / HZ / payments * 1e6:5.1f} µs  {name}")


if __name__ == "__main__":
    main()
