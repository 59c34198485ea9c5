"""mpp.Queue and mpp.JoinableQueue: put/get with block and timeout, queue.Empty/queue.Full,
qsize, task_done/join, Ctrl-C in a blocking get, fork children."""
import os
import queue
import signal
import threading
import time

import pytest

from conftest import fork, wait_ok


def test_put_get_fifo_and_sizes(manager):
    q = manager.queue("q", item=bytes, maxsize=0)
    assert q.empty() and q.qsize() == 0 and not q.full() and q.maxsize == 0
    for i in range(100):
        q.put(b"m%d" % i)
    assert q.qsize() == 100 and not q.empty()
    assert [q.get() for _ in range(100)] == [b"m%d" % i for i in range(100)]
    q.put_nowait(b"x" * 100000)  # larger than a slot: goes through the heap
    assert q.get_nowait() == b"x" * 100000
    assert q.check() == ""
    assert "mpp.Queue 'q' item=bytes maxsize=0" in repr(q)


def test_empty_and_full(manager):
    q = manager.queue("q", item=int, maxsize=2)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False)
    t = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    assert time.monotonic() - t >= 0.19
    q.put(1)
    q.put(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.1)
    with pytest.raises(queue.Full):
        q.put(3, block=False)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)
    assert q.get() == 1 and q.get() == 2
    with pytest.raises(TypeError, match="item must be int, not str"):
        q.put("3")


def test_every_item_type(manager):
    for name, t, v in [("i", int, -7), ("f", float, 0.5), ("s", str, "ünï"), ("b", bytes, b"\0"),
                       ("o", bool, True), ("p", object, {"k": [1, 2]})]:
        q = manager.queue(name, item=t)
        q.put(v)
        assert q.get() == v


def test_close_affects_only_this_handle(manager):
    q = manager.queue("q", item=int)
    other = manager.queue("q", item=int)
    q.put(1)
    q.close()
    with pytest.raises(ValueError, match="closed"):
        q.put(2)
    assert other.get() == 1


def test_joinable_task_done_and_join(manager):
    q = manager.joinable_queue("jq", item=str)
    assert q.join(timeout=0) is True
    for w in ["a", "b", "c"]:
        q.put(w)
    assert q.join(timeout=0.05) is False

    def consume():
        for _ in range(3):
            q.get()
            q.task_done()

    pid = fork(consume)
    assert q.join(timeout=30) is True
    wait_ok(pid)
    with pytest.raises(ValueError):
        q.task_done()


def test_fork_producers_and_consumers(manager):
    q = manager.queue("work", item=int, maxsize=8)
    results = manager.list("results", item=int)
    n_prod, n_cons, each = 2, 2, 500

    def produce(base):
        for i in range(each):
            q.put(base + i)

    def consume():
        while True:
            v = q.get(timeout=30)
            if v < 0:
                return
            results.append(v)

    pids = [fork(lambda b=b: produce(b * 10000)) for b in range(n_prod)]
    cons = [fork(consume) for _ in range(n_cons)]
    for pid in pids:
        wait_ok(pid)
    for _ in range(n_cons):
        q.put(-1)
    for pid in cons:
        wait_ok(pid)
    assert sorted(results) == sorted(b * 10000 + i for b in range(n_prod) for i in range(each))


def _interrupt_soon(delay=0.2):
    t = threading.Timer(delay, os.kill, args=(os.getpid(), signal.SIGINT))
    t.start()
    return t


def test_ctrl_c_interrupts_a_blocking_get_and_loses_nothing(manager):
    q = manager.queue("q", item=int)
    t = _interrupt_soon()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        q.get()
    t.join()
    assert time.monotonic() - start < 5
    q.put(1)
    assert q.get(timeout=5) == 1 and q.check() == ""


def test_ctrl_c_interrupts_a_blocking_put(manager):
    q = manager.queue("q", item=int, maxsize=1)
    q.put(1)
    t = _interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        q.put(2)
    t.join()
    assert q.qsize() == 1 and q.get() == 1 and q.qsize() == 0


def test_other_threads_run_while_one_waits(manager):
    """A blocking get releases the GIL: a thread of the same process can put meanwhile."""
    q = manager.queue("q", item=int)
    got = []
    th = threading.Thread(target=lambda: got.append(q.get(timeout=30)))
    th.start()
    time.sleep(0.05)
    q.put(42)
    th.join()
    assert got == [42]
