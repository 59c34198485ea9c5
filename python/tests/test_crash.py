"""Crash guarantees from Python: a Python process SIGKILLed while it holds a lock, or in the
middle of a dict or list change, blocks nobody and corrupts nothing."""
import os
import random
import time

from conftest import fork, kill_and_reap


def test_sigkill_loop_of_writers_holding_a_lock(manager):
    lock = manager.lock("l")
    d = manager.dict("d", key=str, value=int)
    kills = 20
    for i in range(kills):
        r, w = os.pipe()

        def writer():
            with lock:
                os.write(w, b"1")
                n = 0
                while True:  # killed in here, holding the lock, writing
                    d["k%d" % (n % 50)] = n
                    n += 1

        pid = fork(writer)
        os.read(r, 1)
        kill_and_reap(pid)
        os.close(r)
        os.close(w)
        assert lock.acquire(timeout=10), "a dead holder blocked the lock"
        lock.release()
    assert lock.recoveries == kills
    assert d.check() == ""
    d["after"] = 1
    assert d["after"] == 1


def test_sigkill_inside_an_atomic_update_leaves_the_dict_valid(manager):
    d = manager.dict("d", key=str, value=int)
    d["n"] = 0
    for i in range(10):
        r, w = os.pipe()

        def stuck(v):
            os.write(w, b"1")
            while True:
                pass  # killed here, holding the dict's exclusive lock

        pid = fork(lambda: d.modify("n", stuck, 0))
        os.read(r, 1)
        kill_and_reap(pid)
        os.close(r)
        os.close(w)
        assert d.add("n") == i + 1  # the dead update left nothing; the lock was recovered
    assert d.check() == ""


def test_sigkill_at_random_points_of_dict_and_list_writers(manager):
    d = manager.dict("d", key=str, value=bytes)
    lst = manager.list("l", item=str)
    rng = random.Random(19)
    for i in range(30):
        r, w = os.pipe()

        def writer():
            os.write(w, b"1")
            n = 0
            while True:
                k = "k%d" % (n % 64)
                d[k] = b"v" * (n % 300)
                if n % 3 == 0:
                    d.pop(k, None)
                lst.append(k)
                if len(lst) > 100:
                    lst.pop(0)
                n += 1

        pid = fork(writer)
        os.read(r, 1)
        time.sleep(rng.uniform(0, 0.02))  # a random point of the writer's loop, not a sync
        kill_and_reap(pid)
        os.close(r)
        os.close(w)
        assert d.check() == "" and lst.check() == ""
    for k, v in d.items():
        assert set(v) <= {ord("v")}
    d["after"] = b"ok"
    lst.append("after")
    assert d["after"] == b"ok" and lst[-1] == "after"
