"""Python's side of benchmarks/micro/value_bench.cpp: the same operations with the standard
library's multiprocessing, in one process and between two processes.

  value_locked   with v.get_lock(): v.value += 1      (multiprocessing.Value('q'))
  manager_value  v.value += 1, with a Manager Lock around it when two processes contend
  lock           lock.acquire(); lock.release()       (multiprocessing.Lock)
  event_pingpong set ping / wait pong round trips     (multiprocessing.Event)

Usage: /usr/bin/python3 benchmarks/python/value_bench.py [--seconds S]
Prints one line per figure: name, processes, operations per second; and checks every total.
"""
import argparse
import multiprocessing as mp
import time


def value_locked(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def manager_value(v, lock, n):
    if lock is None:
        for _ in range(n):
            v.value += 1
    else:
        for _ in range(n):
            with lock:
                v.value += 1


def lock_round_trips(lock, n):
    for _ in range(n):
        lock.acquire()
        lock.release()


def in_step(body, args, n, start, done):
    start.wait()
    body(*args, n)
    done.wait()


def pong(ping, pong_ev, stop):
    while True:
        ping.wait()
        ping.clear()
        if stop.is_set():
            return
        pong_ev.set()


def timed(procs, body, args, n):
    """Runs body(*args, n) in `procs` processes (this one included), all starting together,
    and returns the total operations per second between the two barriers."""
    start, done = mp.Barrier(procs), mp.Barrier(procs)
    others = [mp.Process(target=in_step, args=(body, args, n, start, done)) for _ in range(procs - 1)]
    for p in others:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    body(*args, n)
    done.wait()
    elapsed = time.perf_counter() - t0
    for p in others:
        p.join()
    return procs * n / elapsed


def calibrate(seconds, one_op_per_call, probe):
    """How many operations fill about `seconds`, from a probe of `probe` operations."""
    t0 = time.perf_counter()
    one_op_per_call(probe)
    dt = max(time.perf_counter() - t0, 1e-6)
    return max(probe, int(probe * seconds / dt))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    a = ap.parse_args()
    mp.set_start_method("fork")
    rows = []

    for procs in (1, 2):
        v = mp.Value("q", 0)
        n = calibrate(a.seconds, lambda k: value_locked(v, k), 10000)
        v.value = 0
        rate = timed(procs, value_locked, (v,), n)
        assert v.value == procs * n, "lost increments"
        rows.append(("multiprocessing.Value, with get_lock(): value += 1", procs, rate))

    with mp.Manager() as m:
        for procs in (1, 2):
            v = m.Value("q", 0)
            lock = None if procs == 1 else m.Lock()
            n = calibrate(a.seconds, lambda k: manager_value(v, lock, k), 200)
            v.value = 0
            rate = timed(procs, manager_value, (v, lock), n)
            assert v.value == procs * n, "lost increments"
            what = "Manager().Value, value += 1" + ("" if lock is None else " under a Manager Lock")
            rows.append((what, procs, rate))

    for procs in (1, 2):
        lock = mp.Lock()
        n = calibrate(a.seconds, lambda k: lock_round_trips(lock, k), 10000)
        rows.append(("multiprocessing.Lock acquire+release", procs, timed(procs, lock_round_trips, (lock,), n)))

    ping, pong_ev, stop = mp.Event(), mp.Event(), mp.Event()
    p = mp.Process(target=pong, args=(ping, pong_ev, stop))
    p.start()

    def rounds(k):
        for _ in range(k):
            ping.set()
            pong_ev.wait()
            pong_ev.clear()

    n = calibrate(a.seconds, rounds, 200)
    t0 = time.perf_counter()
    rounds(n)
    rate = n / (time.perf_counter() - t0)
    stop.set()
    ping.set()
    p.join()
    rows.append(("multiprocessing.Event ping-pong round trips", 2, rate))

    for what, procs, rate in rows:
        print(f"{what:60s} processes={procs}  {rate:14,.0f} ops/s")


if __name__ == "__main__":
    main()
