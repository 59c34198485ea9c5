"""Workload 4: a multiprocessing.Pool running tiny tasks, f(x) = x*x + 1.

--kind apply: `count` tasks through apply_async, then every result collected with get();
--kind map: pool.map(f, range(count)) with Python's default chunksize. The pool is made
once, before the clock starts; the sum of the results is checked.
"""
import multiprocessing as mp

import common


def f(x):
    return x * x + 1


def main():
    p = common.parser(__doc__)
    p.add_argument("--kind", choices=["apply", "map"], required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    a = p.parse_args()
    n = a.count
    want = (n - 1) * n * (2 * n - 1) // 6 + n
    with mp.get_context("fork").Pool(a.workers) as pool:

        def once():
            start = common.now()
            if a.kind == "apply":
                rs = [pool.apply_async(f, (i,)) for i in range(n)]
                total = sum(r.get() for r in rs)
            else:
                total = sum(pool.map(f, range(n)))
            wall = common.now() - start
            return {"figures": {"wall": wall, "tasks": n / wall}, "correct": total == want,
                    "why": "" if total == want else f"sum of results {total}, expected {want}"}

        common.run(once, a.warmup, a.reps)


if __name__ == "__main__":
    main()
