"""Workload 2: N worker processes count the words of a corpus into one shared dict.

The shared dict is a multiprocessing.Manager().dict(), the only dict Python's
multiprocessing shares between processes. Two ways to fill it:
  --mode local    each worker counts its slice with collections.Counter, then merges into
                  the shared dict under a Manager Lock with one copy() and one update()
                  (the fast way: two proxy round trips per worker);
  --mode perword  each word is one atomic update, `with lock: d[w] = d.get(w, 0) + 1`
                  (a Manager dict cannot do d[w] += 1 atomically by itself).
Workers are forked (Linux default) and take their slice of the inherited word list. The
check is FNV-1a 64 over the sorted "word\\tcount\\n" lines, as the C++ side computes it.
"""
import collections
import multiprocessing as mp

import common

words = []  # the corpus, split; inherited by forked workers


def local_worker(lo, hi, d, lock):
    counts = collections.Counter(words[lo:hi])
    with lock:
        merged = d.copy()
        for w, c in counts.items():
            merged[w] = merged.get(w, 0) + c
        d.update(merged)


def perword_worker(lo, hi, d, lock):
    for w in words[lo:hi]:
        with lock:
            d[w] = d.get(w, 0) + 1


def digest(items):
    h = 0xCBF29CE484222325
    for w, c in sorted(items):
        h = common.fnv1a(f"{w}\t{c}\n".encode(), h)
    return f"{h:016x}"


def main():
    global words
    p = common.parser(__doc__)
    p.add_argument("--corpus", required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--mode", choices=["local", "perword"], required=True)
    a = p.parse_args()
    with open(a.corpus) as f:
        words = f.read().split()
    target = local_worker if a.mode == "local" else perword_worker
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager:
        d = manager.dict()
        lock = manager.Lock()

        def once():
            d.clear()
            n = len(words)
            start = common.now()
            procs = [ctx.Process(target=target,
                                 args=(n * i // a.workers, n * (i + 1) // a.workers, d, lock))
                     for i in range(a.workers)]
            for pr in procs:
                pr.start()
            for pr in procs:
                pr.join()
            wall = common.now() - start
            ok = all(pr.exitcode == 0 for pr in procs)
            return {"figures": {"wall": wall, "ops": n / wall}, "correct": ok,
                    "why": "" if ok else "a worker failed", "check": digest(d.items())}

        common.run(once, a.warmup, a.reps)


if __name__ == "__main__":
    main()
