// mpp.Lock, RLock, Semaphore, BoundedSemaphore, Event and Condition: a Manager's
// synchronisation primitives with Python's methods, context managers for the lockable ones.
// Every wait releases the GIL and honours Ctrl-C between slices (module.hpp). (No Barrier:
// its wait cannot be cut into slices, since a timed-out Barrier wait breaks the barrier.)
#include "module.hpp"

namespace mpp::python {
namespace {

// acquire(block=True, timeout=None) of anything with acquire(bool) and acquire(duration).
template <class L>
bool acquire(L& l, bool block, const py::object& timeout) {
  if (!block) return without_gil([&] { return l.acquire(false); });
  return wait_interruptibly(parse_timeout(timeout), [&](std::chrono::nanoseconds slice) { return l.acquire(slice); });
}

template <class L, class Cls>
void lockable(Cls& c) {
  c.def("acquire", [](L& l, bool block, const py::object& timeout) { return acquire(l, block, timeout); },
        py::arg("block") = true, py::arg("timeout") = py::none(),
        "Waits for the lock (at most `timeout` seconds) and returns whether it got it.")
      .def("__enter__", [](L& l) { acquire(l, true, py::none()); })
      .def("__exit__", [](L& l, py::args) {
        l.release();
        return false;
      });
}

template <class L>
void lock_class(py::module_& m, const char* name, const char* doc) {
  py::class_<L> c(m, name, doc);
  lockable<L>(c);
  // Lambdas, not member pointers: the members belong to the unbound base LockHandle.
  c.def("release", [](L& l) { l.release(); })
      .def("is_owned", [](const L& l) { return l.is_owned(); }, "Whether the calling thread holds it.")
      .def_property_readonly("holder", [](const L& l) { return l.holder(); },
                             "The pid holding it, 0 when free (racy: diagnostics).")
      .def_property_readonly("recoveries", [](const L& l) { return l.recoveries(); },
                             "How many times a holder died holding it and the lock was recovered.");
}

}  // namespace

void bind_sync(py::module_& m, py::class_<Manager>& manager) {
  lock_class<Lock>(m, "Lock",
                   "A process-shared lock; a holder killed while it holds it blocks nobody (the next "
                   "acquirer recovers it).");
  lock_class<RLock>(m, "RLock", "A recursive Lock.");

  py::class_<Semaphore> sem(m, "Semaphore", "multiprocessing.Semaphore, in shared memory.");
  lockable<Semaphore>(sem);
  sem.def("release", [](Semaphore& s, int n) { without_gil([&] { s.release(n); }); }, py::arg("n") = 1)
      .def("get_value", &Semaphore::get_value);
  py::class_<BoundedSemaphore, Semaphore>(m, "BoundedSemaphore",
                                          "A Semaphore whose release() raises ValueError above its initial value.");

  py::class_<Event>(m, "Event", "multiprocessing.Event, in shared memory.")
      .def("set", &Event::set)
      .def("clear", &Event::clear)
      .def("is_set", &Event::is_set)
      .def("wait",
           [](Event& e, const py::object& timeout) {
             return wait_interruptibly(parse_timeout(timeout), [&](std::chrono::nanoseconds slice) { return e.wait(slice); });
           },
           py::arg("timeout") = py::none(), "Waits until the flag is set; returns the flag.");

  py::class_<Condition> cond(m, "Condition", "multiprocessing.Condition, in shared memory.");
  lockable<Condition>(cond);
  cond.def("release", &Condition::release)
      .def("wait",
           [](Condition& c, const py::object& timeout) {
             // A slice that times out re-takes the lock before this thread checks for signals;
             // a notifier needs that lock, so no notification falls between two slices.
             return wait_interruptibly(parse_timeout(timeout), [&](std::chrono::nanoseconds slice) { return c.wait(slice); });
           },
           py::arg("timeout") = py::none())
      .def("wait_for",
           [](Condition& c, py::function predicate, const py::object& timeout) {
             using Clock = std::chrono::steady_clock;
             auto limit = parse_timeout(timeout);
             auto deadline = limit ? std::optional(Clock::now() + *limit) : std::nullopt;
             py::object result = predicate();
             while (!PyObject_IsTrue(result.ptr())) {
               std::optional<std::chrono::nanoseconds> left;
               if (deadline) {
                 left = std::max(std::chrono::nanoseconds{0}, std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - Clock::now()));
                 if (left->count() == 0) break;
               }
               wait_interruptibly(left, [&](std::chrono::nanoseconds slice) { return c.wait(slice); });
               result = predicate();
             }
             return result;
           },
           py::arg("predicate"), py::arg("timeout") = py::none())
      .def("notify", [](Condition& c, int n) { without_gil([&] { c.notify(n); }); }, py::arg("n") = 1)
      .def("notify_all", [](Condition& c) { without_gil([&] { c.notify_all(); }); });

  manager
      .def("lock", [](Manager& mg, const std::string& name) { return without_gil([&] { return mg.lock(name); }); },
           py::arg("name") = "", "The Lock `name` (a fresh unnamed one by default, for forked children).")
      .def("rlock", [](Manager& mg, const std::string& name) { return without_gil([&] { return mg.rlock(name); }); },
           py::arg("name") = "")
      .def("semaphore",
           [](Manager& mg, int value, const std::string& name) { return without_gil([&] { return mg.semaphore(value, name); }); },
           py::arg("value") = 1, py::arg("name") = "")
      .def("bounded_semaphore",
           [](Manager& mg, int value, const std::string& name) {
             return without_gil([&] { return mg.bounded_semaphore(value, name); });
           },
           py::arg("value") = 1, py::arg("name") = "")
      .def("event", [](Manager& mg, const std::string& name) { return without_gil([&] { return mg.event(name); }); },
           py::arg("name") = "")
      .def("condition",
           [](Manager& mg, py::object lock, const std::string& name) {
             if (lock.is_none()) return without_gil([&] { return mg.condition(name); });
             if (py::isinstance<Lock>(lock)) return without_gil([&] { return mg.condition(lock.cast<Lock&>(), name); });
             if (py::isinstance<RLock>(lock)) return without_gil([&] { return mg.condition(lock.cast<RLock&>(), name); });
             throw py::type_error("lock must be an mpp.Lock or mpp.RLock of this Manager");
           },
           py::arg("lock") = py::none(), py::arg("name") = "");
}

}  // namespace mpp::python
