// Plain in-process containers of PyObject with the C++ API of mpp's shared-memory objects,
// so that one adapter per kind (servable.hpp) serves both: InProcessQueue (queue.Queue, as
// mpp::JoinableQueue), InProcessDict (dict, as mpp::Dict), InProcessList (list, as
// mpp::List) and InProcessValue (as mpp::Value). BaseManager serves them as LocalQueue,
// LocalDict, LocalList and LocalValue (servable.hpp); reach one from C++ with object().
//
// They live in one process's heap (a server's), so a std::mutex and std::condition_variable
// are the right tools here; nothing of them is ever in shared memory. Every method is
// thread-safe and one atomic step. Keys and elements compare as in Python (py_equal): 1, 1.0
// and True are the same dict key.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "mpp/net/pyobject.hpp"

namespace mpp::net {

// Python's queue.Queue(maxsize) (0: unbounded), with task_done()/join().
class InProcessQueue {
 public:
  // A timeout in seconds, as Python's get(timeout=1.5) gives it.
  using Seconds = std::chrono::duration<double>;
  // An empty queue holding at most `maxsize` items (0: no limit).
  explicit InProcessQueue(std::size_t maxsize = 0) : maxsize_(maxsize) {}

  // Waits for room as long as needed / at most `timeout` (then throws Full); put_nowait
  // throws Full at once when there is no room.
  void put(PyObject item) { put_until(std::move(item), std::nullopt); }
  void put(PyObject item, Seconds timeout) { put_until(std::move(item), until(timeout)); }
  void put_nowait(PyObject item) { put_until(std::move(item), Clock::now()); }
  // Waits for an item as long as needed / at most `timeout` (then throws Empty).
  PyObject get() { return get_until(std::nullopt); }
  PyObject get(Seconds timeout) { return get_until(until(timeout)); }
  PyObject get_nowait() { return get_until(Clock::now()); }
  std::size_t qsize() const;
  bool empty() const { return qsize() == 0; }
  bool full() const;
  std::size_t maxsize() const noexcept { return maxsize_; }
  // Counts one fetched item as done; throws ValueError if called more often than put().
  void task_done();
  // Waits until every item put has been marked done (with a timeout: TimeoutError).
  void join() { join_until(std::nullopt); }
  void join(Seconds timeout) { join_until(until(timeout)); }

 private:
  using Clock = std::chrono::steady_clock;
  static std::optional<Clock::time_point> until(Seconds timeout);
  void put_until(PyObject item, std::optional<Clock::time_point> deadline);
  PyObject get_until(std::optional<Clock::time_point> deadline);
  void join_until(std::optional<Clock::time_point> deadline);

  std::size_t maxsize_;
  mutable std::mutex mu_;
  std::condition_variable not_empty_, not_full_, all_done_;
  std::deque<PyObject> items_;
  std::size_t unfinished_ = 0;
};

// Python's dict, keeping insertion order. Keys are compared as Python does (see dict_key).
class InProcessDict {
 public:
  // Keys and values are any PyObject, as in Python; Pairs is (key, value) in order.
  using key_type = PyObject;
  using mapped_type = PyObject;
  using Pairs = std::vector<std::pair<PyObject, PyObject>>;

  // The value for `key`, or nullopt.
  std::optional<PyObject> get(const PyObject& key) const;
  bool contains(const PyObject& key) const { return get(key).has_value(); }
  // d[key] = value: a key equal to one present keeps the first key, as in Python.
  void set(const PyObject& key, PyObject value);
  // Removes `key`; false when absent.
  bool erase(const PyObject& key);
  // Removes and returns the value of `key`; throws KeyError when absent.
  PyObject pop(const PyObject& key);
  // The value of `key`, inserting `dflt` first when absent.
  PyObject setdefault(const PyObject& key, PyObject dflt);
  // Removes and returns the last pair inserted; throws KeyError when empty.
  std::pair<PyObject, PyObject> popitem();
  void update(const Pairs& pairs);
  void clear();
  std::size_t size() const;
  Pairs items() const;

 private:
  mutable std::mutex mu_;
  std::list<std::pair<PyObject, PyObject>> order_;  // insertion order
  std::map<PyObject, std::list<std::pair<PyObject, PyObject>>::iterator>
      index_;  // dict_key -> pair
  void set_locked(const PyObject& key, PyObject value);
};

// Python's list. Indexes are Python's (negative from the end; IndexError out of range).
class InProcessList {
 public:
  // Elements are any PyObject.
  using value_type = PyObject;

  // l[i] and l[i] = v; throw IndexError when i is out of range.
  PyObject get(long long i) const;
  void set(long long i, PyObject v);
  // Before index i; i past either end clamps.
  void insert(long long i, PyObject v);
  PyObject pop(long long i = -1);
  void append(PyObject v);
  void extend(const std::vector<PyObject>& values);
  // Throws ValueError when no element equals v.
  void remove(const PyObject& v);
  std::size_t index(const PyObject& v, std::size_t start = 0) const;
  std::size_t count(const PyObject& v) const;
  std::size_t size() const;
  void clear();
  void reverse();
  // Stable; numbers (bool, int, float) compare by value, other values by PyObject's order.
  void sort(bool reverse = false);
  std::vector<PyObject> to_vector() const;

 private:
  std::size_t resolve(long long i, bool for_pop = false) const;
  mutable std::mutex mu_;
  std::vector<PyObject> items_;
};

// One value with value()/set_value(), as mpp::Value (Python: managers' Value).
class InProcessValue {
 public:
  // Holds `initial` (None by default).
  explicit InProcessValue(PyObject initial = {}) : v_(std::move(initial)) {}
  // A copy of the value / replaces it, each under the object's mutex.
  PyObject value() const;
  void set_value(PyObject v);

 private:
  mutable std::mutex mu_;
  PyObject v_;
};

}  // namespace mpp::net
