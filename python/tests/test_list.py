"""mpp.List: the MutableSequence protocol, errors, fork children."""
import collections.abc

import pytest

from conftest import fork, wait_ok


def test_sequence_protocol(manager):
    lst = manager.list("l", item=int)
    assert isinstance(lst, collections.abc.MutableSequence)
    lst.extend(range(5))
    lst.append(5)
    lst += [6]
    assert len(lst) == 7 and lst[0] == 0 and lst[-1] == 6 and list(lst) == [0, 1, 2, 3, 4, 5, 6]
    assert lst[1:3] == [1, 2] and lst[::-1][0] == 6 and list(reversed(lst))[0] == 6
    lst[0] = 10
    lst.insert(1, 11)
    lst.insert(-100, 12)  # clamps, as in Python
    lst.insert(100, 13)
    assert lst.tolist() == [12, 10, 11, 1, 2, 3, 4, 5, 6, 13]
    del lst[0]
    assert lst.pop() == 13 and lst.pop(0) == 10
    lst.remove(4)
    assert 4 not in lst and 5 in lst and "x" not in lst
    assert lst.index(5) == 4 and lst.index(1, 1) == 1 and lst.count(3) == 1 and lst.count("x") == 0
    assert lst == [11, 1, 2, 3, 5, 6]
    lst.clear()
    assert len(lst) == 0 and lst.check() == ""
    assert "mpp.List 'l' item=int" in repr(lst)


def test_errors(manager):
    lst = manager.list("l", item=str)
    with pytest.raises(IndexError, match="list index out of range"):
        lst[0]
    with pytest.raises(IndexError, match="list pop out of range"):
        lst.pop()
    lst.append("a")
    with pytest.raises(IndexError):
        lst[1] = "b"
    with pytest.raises(ValueError, match="x not in list"):
        lst.remove("zz")
    with pytest.raises(ValueError, match="x not in list"):
        lst.index("zz")
    with pytest.raises(ValueError, match="x not in list"):
        lst.index("a", 0, 0)
    with pytest.raises(TypeError, match="item must be str, not int"):
        lst.append(1)
    with pytest.raises(TypeError, match="slice assignment"):
        lst[0:1] = ["x"]
    with pytest.raises(TypeError, match="slice deletion"):
        del lst[0:1]
    with pytest.raises(TypeError, match="item must be str, not int"):
        lst.extend(["ok", 2])
    assert lst.tolist() == ["a"]  # extend is all or nothing


def test_object_items_are_pickled(manager):
    lst = manager.list("o")
    lst.append({"a": 1})
    lst.append([1, 2])
    assert lst.tolist() == [{"a": 1}, [1, 2]] and lst.item_type is object


def test_fork_children_append(manager):
    lst = manager.list("pids", item=int)
    pids = [fork(lambda i=i: [lst.append(i * 100 + j) for j in range(100)]) for i in range(4)]
    for pid in pids:
        wait_ok(pid)
    assert sorted(lst) == sorted(i * 100 + j for i in range(4) for j in range(100))
