"""C++ and Python processes on the same named objects: a C++ producer with Python consumers on
one Queue, Python writers with a C++ reader on one Dict, and the type check both ways."""
import subprocess

import pytest

import mpp
from conftest import fork, wait_ok


def test_cpp_producer_python_consumers_one_queue(named, peer):
    q = named.queue("jobs", item=bytes)
    got = named.list("got", item=bytes)
    n, consumers = 3000, 3

    def consume():
        mine = mpp.Manager.attach(named.name)  # as an unrelated process would
        jobs = mine.queue("jobs", item=bytes)
        out = mine.list("got", item=bytes)
        while True:
            m = jobs.get(timeout=30)
            if not m:
                return
            assert len(m) == 64
            out.append(m[:8])

    pids = [fork(consume) for _ in range(consumers)]
    subprocess.run([peer, "produce", named.name, "jobs", str(n), "64", str(consumers)], check=True, timeout=60)
    for pid in pids:
        wait_ok(pid)
    assert sorted(got) == [b"%08d" % i for i in range(n)]
    assert q.qsize() == 0 and q.check() == ""


def test_python_writers_cpp_reader_one_dict(named, peer):
    d = named.dict("counts", key=str, value=int)
    pids = [fork(lambda w=w: [d.add("w%d" % (i % 10), 1) for i in range(1000 * (w + 1))]) for w in range(3)]
    for pid in pids:
        wait_ok(pid)
    d["neg"] = -(2**63)
    out = subprocess.run([peer, "read-dict", named.name, "counts"], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    pairs = [line.split(" ") for line in out.splitlines()]
    assert [(k, int(v)) for k, v in pairs] == d.items()
    assert sum(d.values()) - d["neg"] == 6000


def test_cpp_writer_python_reader(named, peer):
    subprocess.run([peer, "write-dict", named.name, "sq", "50"], check=True, timeout=60)
    d = named.dict("sq", key=str, value=int)
    assert len(d) == 50 and d["c7"] == 49 and list(d)[:3] == ["c0", "c1", "c2"]


def test_type_mismatch_both_ways(named, peer):
    named.dict("counts", key=str, value=int)["a"] = 1
    r = subprocess.run([peer, "open-dict-as", named.name, "counts", "double"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "TypeMismatch" in r.stdout and "dict<std::string, long int>" in r.stdout
    r = subprocess.run([peer, "open-dict-as", named.name, "fresh", "string"], capture_output=True, timeout=60)
    assert r.returncode == 0
    with pytest.raises(TypeError, match="is a dict<std::string, std::string>"):
        named.dict("fresh", key=str, value=int)
    assert named.dict("fresh", key=str, value=str) == {}
    with pytest.raises(FileNotFoundError):
        mpp.Manager.attach(named.name + "-absent")
    with pytest.raises(FileExistsError):
        mpp.Manager(named.name)
