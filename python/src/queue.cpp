// mpp.Queue and mpp.JoinableQueue: a Manager's Queue<T> / JoinableQueue<T> with the methods
// of Python's multiprocessing queues. Blocking puts and gets wait with the GIL released, in
// slices between which Ctrl-C is honoured (module.hpp, wait_interruptibly): an item is
// either wholly put or got by a slice, or not touched.
#include "fast.hpp"
#include "module.hpp"

namespace mpp::python {
namespace {

struct QueueBase {
  QueueBase(std::string name, Kind item) : name(std::move(name)), item(item) {}
  virtual ~QueueBase() = default;
  virtual void put(py::handle v, bool block, const py::object& timeout) = 0;
  virtual py::object get(bool block, const py::object& timeout) = 0;
  virtual std::size_t qsize() = 0;
  virtual bool full() = 0;
  virtual std::size_t maxsize() = 0;
  virtual void close() = 0;
  virtual std::string check() = 0;

  std::string name;
  std::string segment;  // the Manager segment's name, for pickling
  Kind item;
};

struct JoinableBase : QueueBase {
  using QueueBase::QueueBase;
  virtual void task_done() = 0;
  virtual bool join(const py::object& timeout) = 0;
};

template <class T, class Q>
struct QueueImpl final : QueueBase {
  QueueImpl(Q queue, const std::string& n, Kind k) : QueueBase(n, k), q(std::move(queue)) {}

  void put(py::handle h, bool block, const py::object& timeout) override {
    T v = Conv<T>::from(h, item, "item");
    if (!block) return without_gil([&] { q.put_nowait(v); });
    if (!wait_interruptibly(parse_timeout(timeout), [&](std::chrono::nanoseconds slice) {
          try {
            q.put(v, slice);
            return true;
          } catch (const mpp::Full&) {
            return false;
          }
        })) {
      throw mpp::Full("");
    }
  }
  py::object get(bool block, const py::object& timeout) override {
    std::optional<T> out;
    if (!block) {
      out.emplace(without_gil([&] { return q.get_nowait(); }));
    } else if (!wait_interruptibly(parse_timeout(timeout), [&](std::chrono::nanoseconds slice) {
                 try {
                   out.emplace(q.get(slice));
                   return true;
                 } catch (const mpp::Empty&) {
                   return false;
                 }
               })) {
      throw mpp::Empty("");
    }
    return Conv<T>::to(*out, item);
  }
  std::size_t qsize() override { return q.qsize(); }
  bool full() override { return q.full(); }
  std::size_t maxsize() override { return q.maxsize(); }
  void close() override { q.close(); }
  std::string check() override { return without_gil([&] { return q.check(); }); }
  Q q;
};

// A JoinableQueue: the queue methods of QueueImpl, plus task_done and join.
template <class T>
struct JoinableImpl final : JoinableBase {
  JoinableImpl(JoinableQueue<T> q, const std::string& n, Kind k) : JoinableBase(n, k), impl(std::move(q), n, k) {}
  void put(py::handle v, bool block, const py::object& timeout) override { impl.put(v, block, timeout); }
  py::object get(bool block, const py::object& timeout) override { return impl.get(block, timeout); }
  std::size_t qsize() override { return impl.qsize(); }
  bool full() override { return impl.full(); }
  std::size_t maxsize() override { return impl.maxsize(); }
  void close() override { impl.close(); }
  std::string check() override { return impl.check(); }
  void task_done() override { without_gil([&] { impl.q.task_done(); }); }
  bool join(const py::object& timeout) override {
    return wait_interruptibly(parse_timeout(timeout), [&](std::chrono::nanoseconds slice) {
      try {
        impl.q.join(slice);
        return true;
      } catch (const mpp::TimeoutError&) {
        return false;
      }
    });
  }

  QueueImpl<T, JoinableQueue<T>> impl;
};

// put, get, put_nowait and get_nowait, called by CPython directly (see fast.hpp).
PyObject* put(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return fast::guarded([&] {
    PyObject* a[3];
    fast::parse("put", args, nargs, kwnames, {"item", "block", "timeout"}, a);
    if (a[0] == nullptr) throw py::type_error("put() missing required argument 'item'");
    const bool block = a[1] == nullptr || PyObject_IsTrue(a[1]);
    fast::self_of<QueueBase>(self).put(a[0], block, a[2] ? py::reinterpret_borrow<py::object>(a[2]) : py::none());
    return py::none();
  });
}
PyObject* get(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return fast::guarded([&] {
    PyObject* a[2];
    fast::parse("get", args, nargs, kwnames, {"block", "timeout"}, a);
    const bool block = a[0] == nullptr || PyObject_IsTrue(a[0]);
    return fast::self_of<QueueBase>(self).get(block, a[1] ? py::reinterpret_borrow<py::object>(a[1]) : py::none());
  });
}
PyObject* put_nowait(PyObject* self, PyObject* item) {
  return fast::guarded([&] {
    fast::self_of<QueueBase>(self).put(item, false, py::none());
    return py::none();
  });
}
PyObject* get_nowait(PyObject* self, PyObject*) {
  return fast::guarded([&] { return fast::self_of<QueueBase>(self).get(false, py::none()); });
}

PyMethodDef kPut{"put", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(put)), METH_FASTCALL | METH_KEYWORDS,
                 "put(item, block=True, timeout=None)\n--\n\nPuts `item`, waiting for room if the queue is full "
                 "(queue.Full after `timeout` seconds, or at once when block is False)."};
PyMethodDef kGet{"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(get)), METH_FASTCALL | METH_KEYWORDS,
                 "get(block=True, timeout=None)\n--\n\nRemoves and returns the oldest item, waiting for one "
                 "(queue.Empty after `timeout` seconds, or at once when block is False)."};
PyMethodDef kPutNowait{"put_nowait", put_nowait, METH_O, "put_nowait(item)\n--\n\nput(item, block=False)."};
PyMethodDef kGetNowait{"get_nowait", get_nowait, METH_NOARGS, "get_nowait()\n--\n\nget(block=False)."};

}  // namespace

void bind_queue(py::module_& m, py::class_<Manager>& manager) {
  py::class_<QueueBase> queue(m, "Queue", R"(A queue in shared memory (multiprocessing.Queue's methods).

Many producers and consumers, in any processes sharing the segment, C++ or Python. get() and
put() raise queue.Empty and queue.Full; blocking calls release the GIL and honour Ctrl-C.)");
  for (PyMethodDef* def : {&kPut, &kGet, &kPutNowait, &kGetNowait}) fast::install(queue, def);
  queue.def("qsize", &QueueBase::qsize)
      .def("empty", [](QueueBase& q) { return q.qsize() == 0; })
      .def("full", &QueueBase::full)
      .def_property_readonly("maxsize", &QueueBase::maxsize)
      .def("close", &QueueBase::close, "This handle puts and gets no more (others are not affected).")
      .def("check", &QueueBase::check, "What is wrong with the queue's structure ('' when sound).")
      .def_property_readonly("name", [](QueueBase& q) { return q.name; })
      .def_property_readonly("segment", [](QueueBase& q) { return q.segment; })
      .def_property_readonly("item_type", [](QueueBase& q) { return kind_type(q.item); });
  py::class_<JoinableBase, QueueBase>(m, "JoinableQueue", "A Queue that counts unfinished tasks.")
      .def("task_done", &JoinableBase::task_done, "Marks one item got from the queue as processed.")
      .def("join", &JoinableBase::join, py::arg("timeout") = py::none(),
           "Waits until every item put has had its task_done(); returns False if `timeout` passed first.");

  manager.def(
      "queue",
      [](Manager& mg, const std::string& name, py::handle item, std::size_t maxsize) -> std::unique_ptr<QueueBase> {
        Kind k = kind_of(item, "item");
        return with_type(k, [&]<class T>() -> std::unique_ptr<QueueBase> {
          auto q = without_gil([&] { return mg.queue<T>(name, maxsize); });
          auto p = std::make_unique<QueueImpl<T, Queue<T>>>(std::move(q), name, k);
          p->segment = mg.name();
          return p;
        });
      },
      py::arg("name"), py::arg("item") = kind_type(Kind::object), py::arg("maxsize") = 0,
      R"(The shared queue `name`, made if new with `maxsize` (0: bounded by the segment). item: int,
float, str, bytes, bool or object (pickled). TypeError if `name` exists with another type.)");
  manager.def(
      "joinable_queue",
      [](Manager& mg, const std::string& name, py::handle item, std::size_t maxsize) -> std::unique_ptr<JoinableBase> {
        Kind k = kind_of(item, "item");
        return with_type(k, [&]<class T>() -> std::unique_ptr<JoinableBase> {
          auto q = without_gil([&] { return mg.joinable_queue<T>(name, maxsize); });
          auto p = std::make_unique<JoinableImpl<T>>(std::move(q), name, k);
          p->segment = mg.name();
          return p;
        });
      },
      py::arg("name"), py::arg("item") = kind_type(Kind::object), py::arg("maxsize") = 0,
      "The shared JoinableQueue `name` (as queue()).");
}

}  // namespace mpp::python
