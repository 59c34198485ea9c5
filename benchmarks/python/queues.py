"""Workload 3: a producer process sends messages to a consumer process.

--via queue uses multiprocessing.Queue (put/get of bytes objects, pickled, through a pipe
by the Queue's feeder thread); --via pipe uses multiprocessing.Pipe(duplex=False) with
send_bytes/recv_bytes (no pickling). --kind throughput: `count` messages of `bytes`
bytes from the producer's go (it is started, and has said so, before the clock starts) to
the last one received. --kind latency: ping-pong, one message each way per round trip.
The channels are made once and reused by every run; a run shorter than --min-seconds is
repeated with more messages (not reported), as the C++ side does. Each message carries its
sequence number (8 bytes, little-endian), checked in order on receipt, and its length is
checked.
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


def producer(ch, size, via, ready, go):
    m = make(size, 0)
    ready.send_bytes(b"r")
    count = int(go.recv_bytes())
    for i in range(count):
        m[0:8] = i.to_bytes(8, "little")
        ch.send(bytes(m) if via == "queue" else m)


def echo(ping, pong, ready, go):
    ready.send_bytes(b"r")
    for _ in range(int(go.recv_bytes())):
        pong.send(ping.recv())


def main():
    p = common.parser(__doc__)
    p.add_argument("--kind", choices=["throughput", "latency"], required=True)
    p.add_argument("--bytes", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--via", choices=["queue", "pipe"], required=True)
    p.add_argument("--min-seconds", type=float, default=0.2)
    a = p.parse_args()
    ctx = mp.get_context("fork")
    # Made once, reused by every run (as the C++ variants' channels are).
    ch = Channel(ctx, a.via)
    ping, pong = Channel(ctx, a.via), Channel(ctx, a.via)

    def started(target, args):
        """A child started and ready (not timed), and the pipe that tells it to go."""
        ready_r, ready_w = ctx.Pipe(duplex=False)
        go_r, go_w = ctx.Pipe(duplex=False)
        pr = ctx.Process(target=target, args=args + (ready_w, go_r))
        pr.start()
        ready_r.recv_bytes()
        return pr, go_w

    def throughput(count):
        pr, go = started(producer, (ch, a.bytes, a.via))
        go.send_bytes(str(count).encode())
        start = common.now()
        why = ""
        for i in range(count):
            why = check(ch.recv(), a.bytes, i)
            if why:
                pr.kill()
                break
        wall = common.now() - start
        pr.join()
        return {"figures": {"wall": wall, "msgs": count / wall,
                            "mbps": count * a.bytes / wall / 1e6},
                "correct": not why, "why": why}

    def latency(count):
        pr, go = started(echo, (ping, pong))
        go.send_bytes(str(count).encode())
        m = make(a.bytes, 0)
        ping.send(bytes(m))
        why = check(pong.recv(), a.bytes, 0)  # the first exchange is not timed
        start = common.now()
        for i in range(1, count):
            if why:
                pr.kill()
                break
            m[0:8] = i.to_bytes(8, "little")
            ping.send(bytes(m) if a.via == "queue" else m)
            why = check(pong.recv(), a.bytes, i)
        wall = common.now() - start
        pr.join()
        return {"figures": {"wall": wall, "rtt": wall / (count - 1)},
                "correct": not why, "why": why}

    measure = throughput if a.kind == "throughput" else latency
    count = [a.count]

    def once():
        while True:
            r = measure(count[0])
            wall = r["figures"]["wall"]
            if not r["correct"] or wall >= a.min_seconds:
                return r
            count[0] = int(count[0] * min(10.0, 1.3 * a.min_seconds / max(wall, 1e-6))) + 1

    common.run(once, a.warmup, a.reps)


if __name__ == "__main__":
    main()
