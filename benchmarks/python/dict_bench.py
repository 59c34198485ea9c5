#!/usr/bin/python3
"""Python's multiprocessing.Manager doing what benchmarks/micro/dict_bench.cpp does with mpp:
dict get and set with int keys and int or 100-byte str values, one client and two clients
contending, list append, and d[k] += 1 (which is not atomic in Python). Prints one line per
case: name, operations, seconds, ops/s (for "2 procs", the total of both clients).
Usage: /usr/bin/python3 benchmarks/python/dict_bench.py [seconds_per_case]"""
import multiprocessing as mp
import sys
import time

KEYS = 1000


def run_for(fn, seconds):
    n = 0
    t0 = time.perf_counter()
    while True:
        for _ in range(200):
            fn(n)
            n += 1
        t = time.perf_counter() - t0
        if t >= seconds:
            return n, t


def op(kind, d, l, value):
    if kind == "get":
        return lambda i: d[i % KEYS]
    if kind == "set":
        return lambda i: d.__setitem__(i % KEYS, value)
    if kind == "append":
        return lambda i: l.append(i)
    if kind == "incr":
        def incr(i):
            d[1] = d[1] + 1
        return incr
    raise ValueError(kind)


def worker(kind, d, l, value, seconds, out):
    out.put(run_for(op(kind, d, l, value), seconds))


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    with mp.Manager() as m:
        for vname, value in (("int", 7), ("str100", "x" * 100)):
            d = m.dict({i: value for i in range(KEYS)})
            l = m.list()
            for kind in ("get", "set"):
                n, t = run_for(op(kind, d, l, value), seconds)
                print(f"python_manager dict {kind} {vname} 1 proc: {n} ops {t:.2f} s {n / t:.0f} ops/s")
                q = mp.Queue()
                ps = [mp.Process(target=worker, args=(kind, d, l, value, seconds, q)) for _ in range(2)]
                for p in ps:
                    p.start()
                res = [q.get() for _ in ps]
                for p in ps:
                    p.join()
                total = sum(r[0] for r in res)
                span = max(r[1] for r in res)
                print(f"python_manager dict {kind} {vname} 2 procs: {total} ops {span:.2f} s {total / span:.0f} ops/s")
        d = m.dict({1: 0})
        l = m.list()
        n, t = run_for(op("append", d, l, None), seconds)
        print(f"python_manager list append 1 proc: {n} ops {t:.2f} s {n / t:.0f} ops/s")
        n, t = run_for(op("incr", d, l, None), seconds)
        print(f"python_manager dict d[k]+=1 (not atomic) 1 proc: {n} ops {t:.2f} s {n / t:.0f} ops/s")


if __name__ == "__main__":
    main()
