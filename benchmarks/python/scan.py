"""Workload 1: a read-only dataset of uint64 scanned by N worker processes.

The Python way to share a large array without copies: the parent puts it in a
multiprocessing.shared_memory block and views it with numpy; forked workers (the default
start method on Linux) use the inherited view and each sums the whole array. Wall time
runs from starting the first worker to the last answer; PSS is read while every worker
still holds the data (they wait on an Event).
"""
import multiprocessing as mp
from multiprocessing import shared_memory

import numpy as np

import common

MUL = 0x9E3779B97F4A7C15
data = None  # the numpy view of the shared block, inherited by forked workers


def worker(conn, release):
    conn.send(int(data.sum(dtype=np.uint64)))
    release.wait()


def main():
    global data
    p = common.parser(__doc__)
    p.add_argument("--bytes", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    a = p.parse_args()
    n = a.bytes // 8
    want = (MUL * (n * (n - 1) // 2)) % 2**64
    ctx = mp.get_context("fork")
    shm = shared_memory.SharedMemory(create=True, size=a.bytes)
    try:
        data = np.ndarray((n,), dtype=np.uint64, buffer=shm.buf)
        chunk = 1 << 22  # fill in slices: no temporary as large as the data
        for i in range(0, n, chunk):
            m = min(chunk, n - i)
            np.multiply(np.arange(i, i + m, dtype=np.uint64), np.uint64(MUL), out=data[i:i + m])

        def once():
            release = ctx.Event()
            start = common.now()
            pipes, procs = [], []
            for _ in range(a.workers):
                r, w = ctx.Pipe(duplex=False)
                pr = ctx.Process(target=worker, args=(w, release))
                pr.start()
                pipes.append(r)
                procs.append(pr)
            sums = [r.recv() for r in pipes]
            wall = common.now() - start
            pss = sum(common.pss_bytes(pid) for pid in [mp.current_process().pid] +
                      [pr.pid for pr in procs])
            release.set()
            for pr in procs:
                pr.join()
            bad = [s for s in sums if s != want]
            return {"figures": {"wall": wall, "pss": pss}, "correct": not bad,
                    "why": f"a worker's sum is {bad[0]:#x}, expected {want:#x}" if bad else ""}

        common.run(once, a.warmup, a.reps)
    finally:
        del data
        shm.close()
        shm.unlink()


if __name__ == "__main__":
    main()
