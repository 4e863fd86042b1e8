#!/usr/bin/env python3
"""Sorts one thread's perf samples into the phases of ChainState::accept_block and flush.

Usage (issue 16; see 2026-12-04-connect-full-block-*.txt):
  perf record --call-graph dwarf,32768 -F 499 -p PID -o connect.perf.data
  perf script -i connect.perf.data --tid MAIN_TID -F tid,ip,sym > main.script
  python3 connect_phases.py main.script

Each sample goes to the first phase whose pattern one of its frames matches, outermost
phase first; a sample whose innermost frame is in libsecp256k1 counts as verification
(dwarf unwinding sometimes stops inside it).
"""
import collections
import re
import sys


def phase(frames):
    def has(pattern):
        return any(re.search(pattern, frame) for frame in frames)

    if frames and frames[0].startswith("rustsecp256k1") or has(r"schnorrsig_verify"):
        return "signature verification (this thread's share)"
    if has(r"::flush$|flush_coin_cache|write_flush"):
        if has(r"net_coin_changes"):
            return "flush: net_coin_changes (collect + sort)"
        if has(r"sync_store"):
            return "flush: sync_store (the durable commit)"
        if has(r"WriteTransaction::commit|commit_inner"):
            return "flush: redb commit (dirty pages written, checksums)"
        if has(r"quicksort|smallsort|sort::"):
            return "flush: sorting rows by key"
        if has(r"insert|remove"):
            return "flush: redb inserts/removes (B-tree)"
        if has(r"drop_in_place|_int_free|free"):
            return "flush: dropping the layers"
        return "flush: other (keys, encoding)"
    if has(r"accept_block"):
        if has(r"sync_store"):
            return "accept: sync_store (the durable commit)"
        if has(r"commit_with|WriteTransaction::commit|commit_inner"):
            return "accept: redb commit"
        if has(r"write_block_and_record"):
            return "accept: storing the block and its index record"
        if has(r"compute_txids"):
            return "accept: txids"
        if has(r"merkle"):
            return "accept: Merkle root"
        if has(r"validate_block_structure"):
            return "accept: validate_block_structure"
        if has(r"connect_block_transactions"):
            if has(r"sighash|Sighash|tagged_hash"):
                return "connect_block_transactions: sighashes"
            if has(r"CachingVerifier|cache_key"):
                return "connect_block_transactions: signature cache keys"
            return "connect_block_transactions: other (coins, maps, thread start)"
        if has(r"write_connect"):
            if has(r"BlockChanges|history_entries|spent_addresses|touched"):
                return "write_connect: building the coin-cache layer"
            if has(r"encode_undo"):
                return "write_connect: encoding undo data"
            if has(r"Overlay.*coin"):
                return "write_connect: coin-cache lookups (overlay layers)"
            if has(r"::get|coin_from_bytes"):
                return "write_connect: UTXO table reads"
            if has(r"insert"):
                return "write_connect: undo, height and tip rows"
            return "write_connect: other"
        if has(r"drop_in_place|free"):
            return "accept: drops"
        return "accept: other"
    return "other (the driver, timers)"


def main():
    samples, current = [], None
    with open(sys.argv[1]) as script:
        for line in script:
            if not line.strip():
                continue
            if not line.startswith("\t"):
                if current is not None:
                    samples.append(current)
                current = []
            else:
                parts = line.strip().split(None, 1)
                current.append(parts[1] if len(parts) > 1 else "?")
    if current:
        samples.append(current)
    counts = collections.Counter(phase(frames) for frames in samples)
    total = len(samples)
    print(f"{total} samples of this thread")
    for name, count in counts.most_common():
        print(f"{100 * count / total:6.1f}%  {count:5d}  {name}")


if __name__ == "__main__":
    main()
