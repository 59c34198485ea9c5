// Objects a BaseManager serves (Python: the "referents" a manager's server holds), and the
// plain in-process ones it comes with: LocalQueue (queue.Queue), LocalDict (dict),
// LocalList (list), LocalValue (multiprocessing's Value). All are thread-safe: the server
// runs each connection's calls in that connection's own thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mpp/net/exceptions.hpp"
#include "mpp/net/pyobject.hpp"

namespace mpp::net {

// An object served over the wire. A Python proxy is generated from exposed(), so it must
// list every method a peer may call.
class Servable {
 public:
  virtual ~Servable() = default;
  // The names of the methods a peer may call, as Python names them ("get", "__getitem__").
  virtual const std::vector<std::string>& exposed() const = 0;
  // Runs `method` with Python's positional `args` and keyword `kwds`. What it throws is sent
  // to the caller as an #ERROR (see exceptions.hpp); it may block (queue.get) and then only
  // blocks the calling connection.
  virtual PyObject call(const std::string& method, const Tuple& args, const Dict& kwds) = 0;
  // The whole value, for a peer's _getvalue() ('#GETVALUE'); nullopt when it has none to
  // send (a queue), which the peer sees as #UNSERIALIZABLE, as from Python.
  virtual std::optional<PyObject> value() const { return std::nullopt; }
  // Wakes every call blocked in this object: they throw EOFError. Called when the server
  // shuts down, so no served thread outlives it.
  virtual void interrupt() {}
};

// Reads Python-style arguments: positional index `i`, else keyword `name`, else nullptr.
const PyObject* argument(const Tuple& args, const Dict& kwds, std::size_t i, std::string_view name);

// Python's queue.Queue(maxsize), in process. maxsize 0 means unbounded.
class LocalQueue : public Servable {
 public:
  explicit LocalQueue(std::size_t maxsize = 0) : maxsize_(maxsize) {}
  const std::vector<std::string>& exposed() const override;
  PyObject call(const std::string& method, const Tuple& args, const Dict& kwds) override;
  void interrupt() override;

  // queue.Queue's methods, for the C++ side of the server. timeout nullopt blocks for ever.
  // put throws Full and get throws Empty when they give up; both throw EOFError after interrupt().
  void put(PyObject item, bool block = true, std::optional<std::chrono::duration<double>> timeout = std::nullopt);
  PyObject get(bool block = true, std::optional<std::chrono::duration<double>> timeout = std::nullopt);
  std::size_t qsize() const;
  // Counts one fetched item as done; throws ValueError if called more often than put().
  void task_done();
  // Blocks until every item put has been marked done.
  void join();

 private:
  template <class Pred>
  bool wait(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
            std::optional<std::chrono::duration<double>> timeout, Pred pred);

  std::size_t maxsize_;
  mutable std::mutex mu_;
  std::condition_variable not_empty_, not_full_, all_done_;
  std::deque<PyObject> items_;
  std::size_t unfinished_ = 0;
  bool interrupted_ = false;
};

// Python's dict, in process, keeping insertion order.
class LocalDict : public Servable {
 public:
  const std::vector<std::string>& exposed() const override;
  PyObject call(const std::string& method, const Tuple& args, const Dict& kwds) override;
  std::optional<PyObject> value() const override;

 private:
  mutable std::mutex mu_;
  Dict d_;
  std::map<PyObject, std::size_t> index_;  // key -> position in d_.items
  void erase_at(std::size_t i);
  void set(const PyObject& k, PyObject v);
};

// Python's list, in process.
class LocalList : public Servable {
 public:
  const std::vector<std::string>& exposed() const override;
  PyObject call(const std::string& method, const Tuple& args, const Dict& kwds) override;
  std::optional<PyObject> value() const override;

 private:
  mutable std::mutex mu_;
  std::vector<PyObject> items_;
};

// multiprocessing.managers.Value: one value with get() and set().
class LocalValue : public Servable {
 public:
  explicit LocalValue(PyObject initial = {}) : v_(std::move(initial)) {}
  const std::vector<std::string>& exposed() const override;
  PyObject call(const std::string& method, const Tuple& args, const Dict& kwds) override;
  std::optional<PyObject> value() const override;

 private:
  mutable std::mutex mu_;
  PyObject v_;
};

}  // namespace mpp::net
