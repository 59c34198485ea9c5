"""mpp: multiprocessing's Manager objects in shared memory, shared with C++ processes.

    import mpp
    m = mpp.Manager()                                # a fresh segment, shared with forked children
    d = m.dict("counts", key=str, value=int)         # C++: manager.dict<std::string, std::int64_t>("counts")
    d["a"] = 1; d.add("a", 2)                        # add(): an atomic read-modify-write
    q = m.queue("jobs", item=bytes, maxsize=0)       # C++: manager.queue<std::string>("jobs")
    with m.lock("l"):
        ...

Objects live in a segment in /dev/shm; any process (C++ or Python) that attaches to it by
name (mpp.Manager.attach(name)) reaches the same objects. No server process: every call is
a step on shared memory under the object's lock. Python types map to C++ ones: int <->
std::int64_t, float <-> double, str and bytes <-> std::string, bool <-> bool; object
values are pickled (Python only).
"""

import collections.abc as _abc

from ._mpp import (  # noqa: F401  (the public names)
    DEFAULT_SIZE,
    BoundedSemaphore,
    Condition,
    DecodeError,
    Dict,
    Event,
    JoinableQueue,
    List,
    Lock,
    Manager,
    Queue,
    RLock,
    SegmentError,
    SegmentFull,
    Semaphore,
    TypeMismatch,
    Value,
)

__all__ = [
    "Manager", "Dict", "List", "Queue", "JoinableQueue", "Value", "Lock", "RLock",
    "Semaphore", "BoundedSemaphore", "Event", "Condition", "TypeMismatch", "SegmentFull",
    "SegmentError", "DecodeError", "DEFAULT_SIZE",
]


# The mixin methods Python's ABCs would give a subclass (a pybind11 class cannot also derive
# from an ABC, so the classes are registered and these are set on them). Each is built on
# the atomic methods; popitem() takes the last key that pop() still finds.
def _popitem(self):
    for key in reversed(self.keys()):
        try:
            return key, self.pop(key)
        except KeyError:
            continue  # another process took it first
    raise KeyError("popitem(): dictionary is empty")


def _dict_eq(self, other):
    if not isinstance(other, _abc.Mapping):
        return NotImplemented
    return dict(self.items()) == dict(other.items())


def _dict_repr(self):
    return "<mpp.Dict %r key=%s value=%s %r>" % (
        self.name, self.key_type.__name__, self.value_type.__name__, dict(self.items()))


def _list_eq(self, other):
    if not isinstance(other, _abc.Sequence) or isinstance(other, (str, bytes)):
        return NotImplemented
    return self.tolist() == list(other)


def _list_repr(self):
    return "<mpp.List %r item=%s %r>" % (self.name, self.item_type.__name__, self.tolist())


def _queue_repr(self):
    return "<mpp.%s %r item=%s maxsize=%d>" % (
        type(self).__name__, self.name, self.item_type.__name__, self.maxsize)


def _value_repr(self):
    return "<mpp.Value %s %r>" % (self.type.__name__, self.value)


# Pickling: a handle pickles as (segment name, object name, types) and unpickles by attaching
# to the segment by name, so handles can be passed to spawn or forkserver children, Pool
# tasks and other processes. (The unnamed sync objects and standalone objects have no name
# to attach by and do not pickle.)
def _attach_and_open(segment, method, *args):
    return getattr(Manager.attach(segment), method)(*args)


def _attach(segment):
    return Manager.attach(segment)  # a Python function: pickle cannot name pybind11's


def _reduce_manager(self):
    return (_attach, (self.name,))


def _reduce_dict(self):
    return (_attach_and_open, (self.segment, "dict", self.name, self.key_type, self.value_type))


def _reduce_list(self):
    return (_attach_and_open, (self.segment, "list", self.name, self.item_type))


def _reduce_queue(self):
    method = "joinable_queue" if isinstance(self, JoinableQueue) else "queue"
    return (_attach_and_open, (self.segment, method, self.name, self.item_type, self.maxsize))


def _reduce_value(self):
    return (_attach_and_open, (self.segment, "value", self.name, self.type))


Manager.__reduce__ = _reduce_manager
Dict.__reduce__ = _reduce_dict
List.__reduce__ = _reduce_list
Queue.__reduce__ = _reduce_queue
Value.__reduce__ = _reduce_value
Dict.popitem = _popitem
Dict.__eq__ = _dict_eq
Dict.__repr__ = _dict_repr
Dict.__hash__ = None
List.__eq__ = _list_eq
List.__repr__ = _list_repr
List.__hash__ = None
Queue.__repr__ = _queue_repr
Value.__repr__ = _value_repr
_abc.MutableMapping.register(Dict)
_abc.MutableSequence.register(List)
