"""mpp's Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Value from Python."""
import os
import signal
import threading
import time

import pytest

from conftest import fork, wait_ok


def test_lock_is_a_context_manager(manager):
    lock = manager.lock("l")
    with lock:
        assert lock.is_owned() and lock.holder == os.getpid()
        with pytest.raises(ValueError):
            lock.acquire()  # would deadlock: refused
    assert not lock.is_owned() and lock.holder == 0
    assert lock.acquire(block=False) is True
    lock.release()
    with pytest.raises(ValueError):
        lock.release()
    assert lock.recoveries == 0


def test_lock_between_processes(manager):
    lock = manager.lock()
    counter = manager.value("c", int, 0)
    r, w = os.pipe()
    go_r, go_w = os.pipe()

    def hold():
        with lock:
            os.write(w, b"1")
            os.read(go_r, 1)  # held until the parent has seen it held

    pid = fork(hold)
    os.read(r, 1)
    assert lock.acquire(timeout=0.05) is False
    os.write(go_w, b"1")
    assert lock.acquire(timeout=30) is True
    lock.release()
    wait_ok(pid)
    for fd in (r, w, go_r, go_w):
        os.close(fd)

    def add():
        for _ in range(500):
            with counter.get_lock():
                counter.value += 1

    pids = [fork(add) for _ in range(3)]
    for p in pids:
        wait_ok(p)
    assert counter.value == 1500


def test_ctrl_c_interrupts_acquire(manager):
    lock = manager.lock("l")
    r, w = os.pipe()
    r2, w2 = os.pipe()

    def hold():
        with lock:
            os.write(w, b"1")
            os.read(r2, 1)

    pid = fork(hold)
    os.read(r, 1)
    t = threading.Timer(0.2, os.kill, args=(os.getpid(), signal.SIGINT))
    t.start()
    with pytest.raises(KeyboardInterrupt):
        lock.acquire()
    t.join()
    assert not lock.is_owned()
    os.write(w2, b"1")
    wait_ok(pid)
    with lock:
        pass
    for fd in (r, w, r2, w2):
        os.close(fd)


def test_rlock_and_value(manager):
    rl = manager.rlock("r")
    with rl:
        with rl:
            assert rl.is_owned()
    assert not rl.is_owned()
    v = manager.value("v", float, 1.5)
    assert v.value == 1.5 and v.type is float
    v.value = 2.5
    assert manager.value("v", float).value == 2.5
    b = manager.value("b", bool)
    assert b.value is False
    with pytest.raises(TypeError, match="a Value holds int, float or bool, not str"):
        manager.value("s", str, "x")
    with pytest.raises(TypeError):
        manager.value("v", int)
    with pytest.raises(TypeError, match="value must be float"):
        v.value = "x"


def test_semaphores(manager):
    s = manager.semaphore(2)
    assert s.acquire() and s.acquire() and not s.acquire(block=False)
    assert s.acquire(timeout=0.05) is False
    s.release(2)
    assert s.get_value() == 2
    with s:
        assert s.get_value() == 1
    b = manager.bounded_semaphore(1)
    with pytest.raises(ValueError):
        b.release()


def test_event_between_processes(manager):
    e = manager.event()
    assert not e.is_set() and e.wait(timeout=0.05) is False
    pid = fork(lambda: (time.sleep(0.1), e.set()))
    assert e.wait(timeout=30) is True and e.is_set()
    wait_ok(pid)
    e.clear()
    assert not e.is_set()


def test_condition_between_processes(manager):
    c = manager.condition()
    ready = manager.value("ready", int, 0)

    def waiter():
        with c:
            assert c.wait_for(lambda: ready.value == 1, timeout=30)

    pid = fork(waiter)
    time.sleep(0.05)
    with c:
        ready.value = 1
        c.notify_all()
    wait_ok(pid)
    with c:
        assert c.wait(timeout=0.05) is False
        assert c.wait_for(lambda: False, timeout=0.05) is False
    lock = manager.lock("cl")
    c2 = manager.condition(lock)
    with c2:
        assert lock.is_owned()
    with pytest.raises(TypeError, match="lock must be"):
        manager.condition(object())
