#!/usr/bin/env python3
"""Python's multiprocessing.Pool doing what benchmarks/micro/pool_bench.cpp does with
mpp::Pool: tiny-task apply_async throughput, map over 1M ints (default chunking), and
start+stop of a 2-worker pool. Prints medians over a few repetitions.

    python3 benchmarks/python/pool_bench.py [--reps N]
"""
import argparse
import json
import multiprocessing as mp
import statistics
import time


def inc(x):
    return x + 1


def apply_async_tiny(pool, n):
    t = time.perf_counter()
    rs = [pool.apply_async(inc, (i,)) for i in range(n)]
    s = sum(r.get() for r in rs)
    assert s == n * (n + 1) // 2
    return n / (time.perf_counter() - t)


def map_1m(pool):
    xs = range(1_000_000)
    t = time.perf_counter()
    ys = pool.map(inc, xs)
    dt = time.perf_counter() - t
    assert ys[-1] == 1_000_000
    return len(xs) / dt


def start_stop_2():
    t = time.perf_counter()
    with mp.Pool(2):
        pass
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    mp.set_start_method("fork")
    with mp.Pool(2) as pool:
        apply_async_tiny(pool, 1000)  # warm-up
        tasks = [apply_async_tiny(pool, 20000) for _ in range(args.reps)]
        items = [map_1m(pool) for _ in range(args.reps)]
    stops = [start_stop_2() for _ in range(max(args.reps, 10))]
    result = {
        "python_apply_async_tasks_per_s": statistics.median(tasks),
        "python_map_1m_items_per_s": statistics.median(items),
        "python_pool2_start_stop_ms": statistics.median(stops) * 1e3,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:36s} {v:14.1f}")


if __name__ == "__main__":
    main()
