"""The mpp Python module against Python's multiprocessing, from Python, in one run.

  dict   N sets then N gets on one dict (str keys, int values): mpp's Manager dict in shared
         memory vs multiprocessing.Manager().dict() (a server process, pickles over a socket)
  queue  a producer process puts N messages of B bytes, a consumer process gets them: an mpp
         queue of bytes vs multiprocessing.Queue
  cpp    the same with a C++ producer (mpp-python-peer, one named mpp queue) and a Python
         consumer, vs the pure-Python pair (multiprocessing.Queue between two Python processes)

Figures ("rate") are operations (or messages) per second, from the start of a run to its last
operation (for `cpp`, that includes starting the C++ program, a few milliseconds).

Standalone (interleaves every variant per repetition, prints medians [min-max] and ratios):
    python3 benchmarks/python/mpp_module_bench.py --build build [--reps 5]
For the comparison suite (one variant, JSON runs on stdout, see common.py):
    ... --variant mpp-dict|mp-dict|mpp-queue|mp-queue|cpp-mpp-queue --warmup W --reps R
"""
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time

import common


def make(i, size):
    return (b"%08d" % i) + b"x" * (size - 8)


def check_message(m, i, size):
    if len(m) != size:
        return "a message of %d bytes, sent %d" % (len(m), size)
    if m[:8] != b"%08d" % i:
        return "message %r where %d was due" % (m[:8], i)
    return ""


# ---- dict ---------------------------------------------------------------------------------

def dict_run(d, n):
    keys = ["k%d" % (i % 1000) for i in range(n)]
    t = time.perf_counter()
    for i in range(n):
        d[keys[i]] = i
    total = 0
    for i in range(n):
        total += d[keys[i]]
    elapsed = time.perf_counter() - t
    want = sum(range(n - 1000, n)) * (n // 1000) if n % 1000 == 0 else None
    ok = want is None or total == want
    return {"figures": {"rate": 2 * n / elapsed}, "correct": ok, "why": "" if ok else "wrong sum %d" % total,
            "check": str(total)}


def mpp_dict(n):
    import mpp
    with mpp.Manager(size=64 << 20) as m:
        return dict_run(m.dict("bench", key=str, value=int), n)


def mp_dict(n):
    with mp.get_context("fork").Manager() as m:
        return dict_run(m.dict(), n)


# ---- queues -------------------------------------------------------------------------------

def messages(n, size):
    """The messages, made before the clock starts (forked producers inherit them), so that a
    run times the queue and one comparison per message, not the making of bytes objects."""
    return [make(i, size) for i in range(n)]


def consume(get, msgs, t0):
    for i, want in enumerate(msgs):
        m = get()
        if m != want:
            return {"figures": {}, "correct": False, "why": check_message(m, i, len(want)) or "a wrong message",
                    "check": ""}
    elapsed = time.perf_counter() - t0
    return {"figures": {"rate": len(msgs) / elapsed}, "correct": True, "why": "", "check": ""}


def _produce(put, msgs):
    for m in msgs:
        put(m)


def queue_pair(q, n, size):
    ctx = mp.get_context("fork")
    msgs = messages(n, size)
    t0 = time.perf_counter()
    p = ctx.Process(target=_produce, args=(q.put, msgs))
    p.start()
    r = consume(q.get, msgs, t0)
    p.join()
    if p.exitcode != 0:
        r.update(correct=False, why="the producer exited with %s" % p.exitcode)
    return r


def mpp_queue(n, size):
    import mpp
    with mpp.Manager(size=64 << 20) as m:
        return queue_pair(m.queue("bench", item=bytes), n, size)


def mp_queue(n, size):
    return queue_pair(mp.get_context("fork").Queue(), n, size)


def cpp_mpp_queue(n, size, peer):
    import mpp
    name = "mpp-bench-%d" % os.getpid()
    with mpp.Manager(name, size=64 << 20) as m:
        q = m.queue("bench", item=bytes)
        msgs = messages(n, size)  # what the C++ producer sends
        t0 = time.perf_counter()
        p = subprocess.Popen([peer, "produce", name, "bench", str(n), str(size), "1"])
        r = consume(q.get, msgs, t0)
        if r["correct"] and q.get() != b"":
            r.update(correct=False, why="no end marker")
        if p.wait() != 0:
            r.update(correct=False, why="the C++ producer exited with %d" % p.returncode)
        return r


# ---- driver -------------------------------------------------------------------------------

def variants(a):
    return {
        "mpp-dict": lambda: mpp_dict(a.count),
        "mp-dict": lambda: mp_dict(a.count // 20),  # the Manager is slow: fewer ops, same rate
        "mpp-queue": lambda: mpp_queue(a.count, a.bytes),
        "mp-queue": lambda: mp_queue(a.count, a.bytes),
        "cpp-mpp-queue": lambda: cpp_mpp_queue(a.count, a.bytes, a.peer),
    }


GROUPS = [
    ("dict get/set (str -> int), ops/s", "rate", "mpp-dict", ["mp-dict"]),
    ("queue, Python -> Python, %d B bytes, msgs/s", "rate", "mpp-queue", ["mp-queue"]),
    ("queue, C++ producer -> Python consumer, %d B, msgs/s", "rate", "cpp-mpp-queue", ["mp-queue"]),
]


def standalone(a):
    """Every variant once per repetition, in turn, so that load changes hit all alike."""
    runs = {v: [] for v in variants(a)}
    for rep in range(a.warmup + a.reps):
        for v, fn in variants(a).items():
            r = fn()
            if not r["correct"]:
                sys.exit("%s: wrong result: %s" % (v, r["why"]))
            if rep >= a.warmup:
                runs[v].append(r["figures"])
    print("mpp Python module vs multiprocessing (%s, %d reps, median [min-max], ratio of medians [min-max of the per-repetition ratios])"
          % (sys.version.split()[0], a.reps))
    for title, key, mine, refs in GROUPS:
        print("\n" + (title % a.bytes if "%d" in title else title))
        for v in [mine] + refs:
            xs = [f[key] for f in runs[v]]
            print("  %-14s %12.0f [%.0f-%.0f]" % (v, statistics.median(xs), min(xs), max(xs)))
        for ref in refs:
            ratios = [f[key] / g[key] for f, g in zip(runs[mine], runs[ref])]
            print("  %s / %s = %.1fx [%.1f-%.1f per rep]" % (
                mine, ref, statistics.median([f[key] for f in runs[mine]]) / statistics.median([g[key] for g in runs[ref]]),
                min(ratios), max(ratios)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(runs, f)


def main():
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("--variant", choices=["mpp-dict", "mp-dict", "mpp-queue", "mp-queue", "cpp-mpp-queue"])
    p.add_argument("--count", type=int, default=200000)
    p.add_argument("--bytes", type=int, default=64)
    p.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "..", "build"),
                   help="the build tree (its python/ holds the module, python/tests/ the C++ peer)")
    p.add_argument("--json", help="standalone: also write every run here")
    a = p.parse_args()
    if a.bytes < 8:
        p.error("--bytes must be at least 8 (the sequence number)")
    sys.path.insert(0, os.path.join(a.build, "python"))
    a.peer = os.path.join(a.build, "python", "tests", "mpp-python-peer")
    if a.variant:
        common.run(variants(a)[a.variant], a.warmup, a.reps)
    else:
        standalone(a)


if __name__ == "__main__":
    main()
