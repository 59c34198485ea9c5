"""Shared fixtures of the mpp module's tests.

Every test runs under a watchdog (faulthandler.dump_traceback_later): a deadlock dumps every
thread's stack and exits within WATCHDOG_SECONDS, naming itself, well before ctest's timeout.
Every test must leave no child process and no segment of its own in /dev/shm; an autouse
fixture checks both.
"""
import faulthandler
import os
import signal
import sys

import pytest

import mpp

WATCHDOG_SECONDS = 60
PEER = os.environ.get("MPP_PYTHON_PEER", "")
SOURCE_DIR = os.environ.get("MPP_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


def shm_names():
    return set(os.listdir("/dev/shm"))


@pytest.fixture(autouse=True)
def watchdog_and_children():
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
    # A failed test may leave a child blocked: kill and reap it, then fail.
    left = sorted(_children)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    _children.clear()
    assert not left, "a test left child processes %s (killed now)" % left
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
        assert pid != 0, "a test left a child process running"
        assert False, "a test left child %d unreaped" % pid
    except ChildProcessError:
        pass  # no child: as it should be


_shm_at_start = shm_names()


def pytest_sessionfinish(session, exitstatus):
    """Segments are removed when their last handle is gone: once pytest lets go of the tests'
    arguments, none of this process's segments may remain in /dev/shm."""
    import gc
    for item in session.items:
        if getattr(item, "funcargs", None):
            item.funcargs.clear()
    gc.collect()
    mine = ("mpp-%d-" % os.getpid(), "pytest-%d-" % os.getpid())
    left = sorted(n for n in shm_names() - _shm_at_start if n.startswith(mine))
    if left:
        print("\nFAILED: the tests left segments in /dev/shm: %s" % left)
        session.exitstatus = 1


@pytest.fixture
def manager():
    return mpp.Manager()


@pytest.fixture
def named(request):
    """A Manager with a name of its own (for C++ peers, which attach by name)."""
    name = "pytest-%d-%s" % (os.getpid(), request.node.name[:60].replace("[", "-").replace("]", ""))
    return mpp.Manager(name, size=32 << 20)


@pytest.fixture
def peer():
    if not PEER or not os.path.exists(PEER):
        pytest.fail("MPP_PYTHON_PEER does not name the mpp-python-peer program (run the tests with ctest)")
    return PEER


_children = set()  # forked by fork(), not yet reaped


def fork(fn):
    """Runs fn() in a forked child, which exits 0 if fn returned, 1 if it raised. Returns the
    pid. The child has a watchdog of its own: the parent's watchdog thread is not forked."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # faulthandler's watchdog cannot be re-armed in a fork (its thread is gone and
            # cancelling waits for it); SIGALRM's default action ends the child instead.
            signal.alarm(WATCHDOG_SECONDS)
            fn()
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _children.add(pid)
    return pid


def wait_ok(pid):
    _, status = os.waitpid(pid, 0)
    _children.discard(pid)
    assert os.waitstatus_to_exitcode(status) == 0, "child %d failed: status %d" % (pid, status)


def kill_and_reap(pid):
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    _children.discard(pid)
    return status
