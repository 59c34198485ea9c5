#!/usr/bin/env python3
"""Python's subprocess doing the work of benchmarks/micro/subprocess_bench.cpp.

Prints the median and mean time per operation (and MiB/s for communicate), to compare side by side
with `build/benchmarks/micro/subprocess_bench`. Usage: subprocess_bench.py [repeats]
"""
import statistics
import subprocess
import sys
import time


def timings(fn, repeats):
    """(median, mean, parent CPU) seconds per call; Google Benchmark reports the mean of a
    run and its "CPU" column is the parent's CPU time per call, as the third value here."""
    times = []
    c0 = time.process_time()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - c0) / repeats
    return statistics.median(times), statistics.fmean(times), cpu


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    data = b"x" * (16 << 20)

    def communicate_cat():
        p = subprocess.Popen(["/bin/cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, _ = p.communicate(data)
        assert len(out) == len(data)

    rows = [
        ("run_true", lambda: subprocess.run(["/bin/true"]), repeats),
        ("run_true_path_lookup", lambda: subprocess.run(["true"]), repeats),
        ("check_output_echo", lambda: subprocess.check_output(["/bin/echo", "hi"]), repeats),
        ("communicate_cat/16MiB", communicate_cat, max(5, repeats // 20)),
    ]
    print(f"python {sys.version.split()[0]} subprocess, per call over N calls")
    for name, fn, n in rows:
        med, mean, cpu = timings(fn, n)
        extra = f"  {16 / mean:6.0f} MiB/s (mean)" if name.startswith("communicate") else ""
        print(f"{name:24s} median {med * 1e6:10.1f} us  mean {mean * 1e6:10.1f} us  "
              f"parent CPU {cpu * 1e6:9.1f} us  (N={n}){extra}")


if __name__ == "__main__":
    main()
