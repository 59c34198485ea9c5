"""Shared by the Python side of mpp's comparison suite (benchmarks/compare runs these).

Every script takes --warmup W --reps R plus its own arguments, does W unmeasured and R
measured runs of its workload with the standard library's multiprocessing, and prints one
JSON document on stdout:
    {"runs": [{"figures": {name: number}, "correct": bool, "why": str, "check": str}]}
The C++ side computes medians and ratios from these runs exactly as for its own variants.
"""
import argparse
import json
import os
import sys
import time


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    return p


def pss_bytes(pid):
    """Proportional set size of one process, from /proc/<pid>/smaps_rollup."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no Pss line for pid {pid}")


def fnv1a(data: bytes, h: int = 0xCBF29CE484222325) -> int:
    """FNV-1a 64, as bench::fnv1a in benchmarks/compare/harness.cpp."""
    for c in data:
        h = ((h ^ c) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def run(once, warmup, reps):
    """Calls once() warmup + reps times; prints the measured runs as JSON."""
    runs = []
    for k in range(warmup + reps):
        r = once()
        if k >= warmup or not r.get("correct", True):
            runs.append(r)
    json.dump({"runs": runs}, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


def now():
    return time.perf_counter()
