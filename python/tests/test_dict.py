"""mpp.Dict: the MutableMapping protocol, atomic updates, types and their errors, fork children."""
import collections.abc
import multiprocessing
import os

import pytest

import mpp
from conftest import fork, wait_ok


def test_mapping_protocol(manager):
    d = manager.dict("d", key=str, value=int)
    assert isinstance(d, collections.abc.MutableMapping)
    assert len(d) == 0 and "a" not in d and d.get("a") is None and d.get("a", 5) == 5
    d["b"] = 2
    d["a"] = 1
    d["c"] = 3
    assert d["a"] == 1 and "a" in d and len(d) == 3
    assert list(d) == ["b", "a", "c"]  # insertion order
    assert d.keys() == ["b", "a", "c"] and d.values() == [2, 1, 3]
    assert d.items() == [("b", 2), ("a", 1), ("c", 3)]
    d["a"] = 10  # replacing keeps the position
    assert list(d) == ["b", "a", "c"] and d["a"] == 10
    del d["b"]
    assert list(d) == ["a", "c"]
    assert d.pop("a") == 10 and d.pop("a", None) is None and d.pop("zz", 7) == 7
    assert d.setdefault("c", 99) == 3 and d.setdefault("n", 4) == 4 and d["n"] == 4
    d.update({"x": 1}, y=2)
    d.update([("z", 3)])
    assert dict(d.items()) == {"c": 3, "n": 4, "x": 1, "y": 2, "z": 3}
    assert d == {"c": 3, "n": 4, "x": 1, "y": 2, "z": 3} and d != {"c": 3}
    assert d.popitem() == ("z", 3)
    d.clear()
    assert len(d) == 0 and d == {}
    with pytest.raises(KeyError, match="popitem"):
        d.popitem()
    assert d.check() == ""
    assert "mpp.Dict 'd' key=str value=int" in repr(d)


def test_missing_keys_raise_key_error(manager):
    d = manager.dict("d", key=str, value=int)
    with pytest.raises(KeyError) as e:
        d["nope"]
    assert e.value.args == ("'nope'",)
    with pytest.raises(KeyError):
        del d["nope"]
    with pytest.raises(KeyError):
        d.pop("nope")
    with pytest.raises(TypeError, match="pop expected at most 2 arguments"):
        d.pop("a", 1, 2)


def test_add_and_modify_are_atomic_read_modify_writes(manager):
    d = manager.dict("d", key=str, value=int)
    assert d.add("n") == 1 and d.add("n", 5) == 6 and d.add("m", 2, initial=10) == 12
    assert d.modify("n", lambda v: v * 2, 0) == 12 and d["n"] == 12
    assert d.modify("new", lambda v: v + 1, 41) == 42

    def boom(v):
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        d.modify("n", boom, 0)
    assert d["n"] == 12  # unchanged when fn raises
    with pytest.raises(TypeError, match="value must be int"):
        d.modify("n", lambda v: "text", 0)
    assert d["n"] == 12
    f = manager.dict("f", key=int, value=float)
    assert f.add(1, 0.5) == 0.5 and f.add(1, 0.25) == 0.75
    s = manager.dict("s", key=str, value=str)
    with pytest.raises(TypeError, match="add\\(\\) needs value=int or value=float"):
        s.add("a", 1)
    assert s.modify("a", lambda v: v + "!", "hi") == "hi!"


def test_add_from_many_processes_loses_nothing(manager):
    d = manager.dict("counts", key=str, value=int)
    n, each = 4, 2000

    def work():
        for _ in range(each):
            d.add("hits")

    pids = [fork(work) for _ in range(n)]
    for pid in pids:
        wait_ok(pid)
    assert d["hits"] == n * each


@pytest.mark.parametrize("key,value,k,v,other", [
    (int, int, -5, 2**63 - 1, 0),
    (float, float, 1.5, -2.25, 0.0),
    (str, str, "clé", "välue ✓", ""),
    (bytes, bytes, b"\x00\xff", b"raw\x00bytes", b""),
    (bool, bool, True, False, False),
    (str, object, "o", {"nested": [1, (2, 3)], "s": {4}}, None),
])
def test_every_type(manager, key, value, k, v, other):
    d = manager.dict("t", key=key, value=value)
    assert d.key_type is key and d.value_type is value
    d[k] = v
    assert d[k] == v and type(d[k]) is value if value is not object else d[k] == v
    d[k] = other
    assert d[k] == other


def test_wrong_types_are_type_errors(manager):
    d = manager.dict("d", key=str, value=int)
    with pytest.raises(TypeError, match="key must be str, not int"):
        d[1] = 1
    with pytest.raises(TypeError, match="value must be int, not str"):
        d["a"] = "1"
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        d["a"] = 2**64
    assert 1 not in d and len(d) == 0
    with pytest.raises(TypeError, match="key=object is not supported"):
        manager.dict("o", key=object)
    with pytest.raises(TypeError, match="key must be one of the types"):
        manager.dict("l", key=list)


def test_same_name_other_types_is_type_mismatch(manager):
    manager.dict("d", key=str, value=int)
    with pytest.raises(TypeError) as e:
        manager.dict("d", key=str, value=float)
    assert isinstance(e.value, mpp.TypeMismatch)
    assert "dict<std::string, long int>" in str(e.value) and "dict<std::string, double>" in str(e.value)
    with pytest.raises(mpp.TypeMismatch, match="is a dict"):
        manager.list("d", item=int)
    # str and bytes are both std::string in C++: the same object, read as either
    b = manager.dict("d", key=bytes, value=int)
    manager.dict("d", key=str, value=int)["k"] = 1
    assert b[b"k"] == 1


def test_same_name_is_same_object(named):
    named.dict("d", key=str, value=int)["a"] = 1
    assert named.dict("d", key=str, value=int)["a"] == 1
    again = mpp.Manager.attach(named.name)
    assert again.dict("d", key=str, value=int)["a"] == 1 and not again.is_creator


def test_os_fork_children_share_the_dict(manager):
    d = manager.dict("d", key=int, value=str)
    pids = [fork(lambda i=i: d.__setitem__(i, "child %d" % os.getpid())) for i in range(5)]
    for pid in pids:
        wait_ok(pid)
    assert sorted(d.keys()) == [0, 1, 2, 3, 4]
    assert {v for v in d.values()} == {"child %d" % p for p in pids}


def _mp_worker(d, i):
    d[i] = i * i


def test_multiprocessing_fork_children_share_the_dict(manager):
    ctx = multiprocessing.get_context("fork")
    d = manager.dict("d", key=int, value=int)
    procs = [ctx.Process(target=_mp_worker, args=(d, i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert dict(d.items()) == {0: 0, 1: 1, 2: 4, 3: 9}


def _spawn_worker(d, lst, q, v, i):
    d[i] = i * i
    lst.append(i)
    q.put(i)
    with v.get_lock():
        v.value += 1


def test_handles_pickle_for_spawn_children(named):
    """Handles pickle as names: spawn children attach to the segment and open the same objects."""
    import pickle
    d = named.dict("d", key=int, value=int)
    lst = named.list("l", item=int)
    q = named.joinable_queue("q", item=int, maxsize=10)
    v = named.value("v", int, 0)
    again = pickle.loads(pickle.dumps(d))
    again[7] = 49
    assert d[7] == 49 and pickle.loads(pickle.dumps(named)).name == named.name
    assert type(pickle.loads(pickle.dumps(q))) is mpp.JoinableQueue
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_spawn_worker, args=(d, lst, q, v, i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert d[0] == 0 and d[1] == 1 and sorted(lst) == [0, 1] and sorted([q.get(), q.get()]) == [0, 1]
    assert v.value == 2
    with pytest.raises(TypeError):
        pickle.dumps(named.lock())
    # spawn started multiprocessing's resource tracker, a child of this process: stop it
    from multiprocessing import resource_tracker
    resource_tracker._resource_tracker._stop()


def test_full_segment_raises_segment_full_and_keeps_the_dict(manager):
    small = mpp.Manager(size=1 << 20)
    d = small.dict("d", key=str, value=bytes)
    d["keep"] = b"1"
    with pytest.raises(MemoryError) as e:
        for i in range(10000):
            d["k%d" % i] = b"x" * 4096
    assert isinstance(e.value, mpp.SegmentFull)
    assert d["keep"] == b"1" and d.check() == ""
    with pytest.raises(MemoryError):
        d.update({"a%d" % i: b"y" * 4096 for i in range(1000)})
    n = len(d)
    assert d.check() == "" and len(d) == n
