"""Workload 3: a producer process sends messages to a consumer process.

--via queue uses multiprocessing.Queue (put/get of bytes objects, pickled, through a pipe
by the Queue's feeder thread); --via pipe uses multiprocessing.Pipe(duplex=False) with
send_bytes/recv_bytes (no pickling). --kind throughput: `count` messages of `bytes`
bytes from the producer's start to the last one received. --kind latency: ping-pong, one
message each way per round trip. Each message carries its sequence number (8 bytes,
little-endian), checked in order on receipt, and its length is checked.
"""
import multiprocessing as mp

import common


class Channel:
    """One direction: send(bytes-like) in one process, recv() -> bytes in the other."""

    def __init__(self, ctx, via):
        if via == "queue":
            q = ctx.Queue()
            self.send, self.recv = q.put, q.get
        else:
            r, w = ctx.Pipe(duplex=False)
            self.send, self.recv = w.send_bytes, r.recv_bytes


def make(size, seq):
    m = bytearray(b"x" * size)
    m[0:8] = seq.to_bytes(8, "little")
    return m


def check(m, size, want):
    if len(m) != size:
        return f"a message of {len(m)} bytes, sent {size}"
    got = int.from_bytes(m[0:8], "little")
    if got != want:
        return f"message {got} where {want} was due"
    if m[-1] != ord("x"):
        return "a torn message"
    return ""


def producer(ch, size, count, via):
    m = make(size, 0)
    for i in range(count):
        m[0:8] = i.to_bytes(8, "little")
        ch.send(bytes(m) if via == "queue" else m)


def echo(ping, pong, count):
    for _ in range(count):
        pong.send(ping.recv())


def main():
    p = common.parser(__doc__)
    p.add_argument("--kind", choices=["throughput", "latency"], required=True)
    p.add_argument("--bytes", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--via", choices=["queue", "pipe"], required=True)
    a = p.parse_args()
    ctx = mp.get_context("fork")

    def throughput():
        ch = Channel(ctx, a.via)
        start = common.now()
        pr = ctx.Process(target=producer, args=(ch, a.bytes, a.count, a.via))
        pr.start()
        why = ""
        for i in range(a.count):
            why = check(ch.recv(), a.bytes, i)
            if why:
                pr.kill()
                break
        wall = common.now() - start
        pr.join()
        return {"figures": {"wall": wall, "msgs": a.count / wall,
                            "mbps": a.count * a.bytes / wall / 1e6},
                "correct": not why, "why": why}

    def latency():
        ping, pong = Channel(ctx, a.via), Channel(ctx, a.via)
        pr = ctx.Process(target=echo, args=(ping, pong, a.count))
        pr.start()
        m = make(a.bytes, 0)
        ping.send(bytes(m))
        why = check(pong.recv(), a.bytes, 0)  # waits for the child to start; not timed
        start = common.now()
        for i in range(1, a.count):
            if why:
                pr.kill()
                break
            m[0:8] = i.to_bytes(8, "little")
            ping.send(bytes(m) if a.via == "queue" else m)
            why = check(pong.recv(), a.bytes, i)
        wall = common.now() - start
        pr.join()
        return {"figures": {"rtt": wall / (a.count - 1)}, "correct": not why, "why": why}

    common.run(throughput if a.kind == "throughput" else latency, a.warmup, a.reps)


if __name__ == "__main__":
    main()
