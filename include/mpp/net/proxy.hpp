// Client-side proxies of mpp::net: BaseProxy (Python: BaseProxy / AutoProxy) and the typed
// RemoteQueue, RemoteDict, RemoteList and RemoteValue, with the local objects' methods.
// Obtain them from BaseManager::queue/dict/list/value/proxy.
//
// Each proxy owns one connection to the server, opened on its first call (as a Python
// proxy's thread does) and used by one call at a time: a proxy may be shared between
// threads, whose calls then take turns. A proxy holds one reference to its object on the
// server and gives it back (decref) when destroyed. Values cross as PyObject (pyobject.hpp):
// T may be any type to_py/from_py convert, and other C++ types travel as codec bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mpp/net/connection.hpp"
#include "mpp/net/pyobject.hpp"

namespace mpp::net {

namespace detail {

// What a client needs to reach a manager.
struct ClientConfig {
  std::string host;
  std::uint16_t port = 0;
  std::string authkey;
  std::chrono::milliseconds handshake_timeout{10000};
  std::size_t max_frame = kDefaultMaxFrame;
};

// A connected, authenticated connection (the client answers the server's challenge, then
// challenges it). Throws OSError, AuthenticationError, TimeoutError.
Connection open_connection(const ClientConfig& c);

// Sends `request` on `conn` and returns the #RETURN value. Raises the #ERROR exception
// (exceptions.hpp), RemoteError for #TRACEBACK and #UNSERIALIZABLE, UnpicklingError (a
// DecodeError holding the raw reply) for a reply outside the pickle subset (the connection
// stays usable).
PyObject roundtrip(Connection& conn, const PyObject& request, std::size_t max_frame,
                   Deadline deadline);

// One manager-level request (ident None) on a connection of its own, as Python's client does.
PyObject manager_request(const ClientConfig& c, const std::string& method, Tuple args);

}  // namespace detail

// A reference to one object on a manager's server, and the connection its calls use (see
// the top of this file). Movable, not copyable: it owns one server-side reference.
class BaseProxy {
 public:
  // Takes over a reference the server already counted (what `create` returned: the
  // object's `ident` and `exposed` methods, registered as `typeid_`). Connects nothing yet:
  // the first call opens the proxy's connection. Obtain proxies from BaseManager.
  BaseProxy(std::shared_ptr<const detail::ClientConfig> config, std::string typeid_,
            std::string ident, std::vector<std::string> exposed);
  // Moves the reference and the connection; the moved-from proxy holds nothing and gives
  // nothing back. Assignment first gives back the reference this proxy held.
  BaseProxy(BaseProxy&&) noexcept;
  BaseProxy& operator=(BaseProxy&&) noexcept;
  // Gives the reference back to the server (best effort: a server that has gone is ignored).
  ~BaseProxy();

  // Python: _callmethod. Calls `method` on the referent and returns its result; throws what
  // detail::roundtrip throws, and TimeoutError past `deadline` (after which the proxy
  // reconnects on its next call, since the reply may still arrive on the old connection).
  PyObject call_method(const std::string& method, Tuple args = {}, Dict kwds = {},
                       Deadline deadline = std::nullopt);
  // Python: _getvalue. A copy of the referent's value (dicts, lists, values).
  PyObject get_value();

  // The name the object's type was registered under, its id string on the server, and the
  // methods the server lets a peer call on it (Python: _token.typeid, _token.id, _exposed_).
  const std::string& typeid_() const;
  const std::string& ident() const;
  const std::vector<std::string>& exposed() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

namespace detail {
inline Deadline call_deadline(const Timeout& t) {
  if (!t) return std::nullopt;
  // The server answers when the call's own timeout has passed; allow it time to do so.
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(*t) + std::chrono::seconds(10);
}
inline Dict timeout_kwds(const Timeout& t) {
  Dict d;
  if (t) d.items.emplace_back("timeout", t->count());
  return d;
}
}  // namespace detail

// A queue.Queue served by a manager. Empty and Full arrive as mpp::Empty and mpp::Full.
template <class T = PyObject>
class RemoteQueue {
 public:
  // Wraps `p`, a proxy of a queue (BaseManager::queue makes one).
  explicit RemoteQueue(BaseProxy p) : p_(std::move(p)) {}
  // put(item, block=True, timeout): throws Full if a bounded queue stays full past `timeout`.
  void put(const T& item, Timeout timeout = std::nullopt) {
    p_.call_method("put", Tuple{{to_py(item)}}, detail::timeout_kwds(timeout),
                   detail::call_deadline(timeout));
  }
  void put_nowait(const T& item) { p_.call_method("put_nowait", Tuple{{to_py(item)}}); }
  // get(block=True, timeout): throws Empty when nothing arrives within `timeout`. An item
  // outside the pickle subset was taken all the same: UnpicklingError (a DecodeError) then
  // carries the reply's raw pickle in data(). An item that is not a T throws TypeMismatch
  // naming it (use RemoteQueue<PyObject> for a queue of mixed types).
  T get(Timeout timeout = std::nullopt) {
    return from_py<T>(
        p_.call_method("get", {}, detail::timeout_kwds(timeout), detail::call_deadline(timeout)));
  }
  T get_nowait() { return from_py<T>(p_.call_method("get_nowait")); }
  std::size_t qsize() { return from_py<std::size_t>(p_.call_method("qsize")); }
  bool empty() { return from_py<bool>(p_.call_method("empty")); }
  bool full() { return from_py<bool>(p_.call_method("full")); }
  void task_done() { p_.call_method("task_done"); }
  void join() { p_.call_method("join"); }
  BaseProxy& proxy() noexcept { return p_; }

 private:
  BaseProxy p_;
};

// A dict served by a manager. A missing key is mpp::KeyError.
template <class K = PyObject, class V = PyObject>
class RemoteDict {
 public:
  // Wraps `p`, a proxy of a dict (BaseManager::dict makes one).
  explicit RemoteDict(BaseProxy p) : p_(std::move(p)) {}
  // d[key]; throws KeyError when absent.
  V operator[](const K& key) {
    return from_py<V>(p_.call_method("__getitem__", Tuple{{to_py(key)}}));
  }
  // d.get(key): nullopt when absent.
  std::optional<V> get(const K& key) {
    PyObject v = p_.call_method("__contains__", Tuple{{to_py(key)}});
    if (!from_py<bool>(v)) return std::nullopt;
    return (*this)[key];
  }
  // d[key] = value.
  void set(const K& key, const V& value) {
    p_.call_method("__setitem__", Tuple{{to_py(key), to_py(value)}});
  }
  // del d[key]; throws KeyError when absent.
  void erase(const K& key) { p_.call_method("__delitem__", Tuple{{to_py(key)}}); }
  V pop(const K& key) { return from_py<V>(p_.call_method("pop", Tuple{{to_py(key)}})); }
  V setdefault(const K& key, const V& dflt) {
    return from_py<V>(p_.call_method("setdefault", Tuple{{to_py(key), to_py(dflt)}}));
  }
  bool contains(const K& key) {
    return from_py<bool>(p_.call_method("__contains__", Tuple{{to_py(key)}}));
  }
  std::size_t size() { return from_py<std::size_t>(p_.call_method("__len__")); }
  std::vector<K> keys() { return from_py<std::vector<K>>(p_.call_method("keys")); }
  std::vector<V> values() { return from_py<std::vector<V>>(p_.call_method("values")); }
  std::vector<std::pair<K, V>> items() {
    return from_py<std::vector<std::pair<K, V>>>(p_.call_method("items"));
  }
  void update(const std::map<K, V>& other) { p_.call_method("update", Tuple{{to_py(other)}}); }
  void clear() { p_.call_method("clear"); }
  // A copy of the whole dict.
  std::map<K, V> copy() { return from_py<std::map<K, V>>(p_.call_method("copy")); }
  BaseProxy& proxy() noexcept { return p_; }

 private:
  BaseProxy p_;
};

// A list served by a manager. A bad index is mpp::IndexError; indexes may be negative.
template <class T = PyObject>
class RemoteList {
 public:
  // Wraps `p`, a proxy of a list (BaseManager::list makes one).
  explicit RemoteList(BaseProxy p) : p_(std::move(p)) {}
  // l[i], l[i] = v, del l[i]: throw IndexError when i is out of range.
  T operator[](std::int64_t i) { return from_py<T>(p_.call_method("__getitem__", Tuple{{i}})); }
  void set(std::int64_t i, const T& v) { p_.call_method("__setitem__", Tuple{{i, to_py(v)}}); }
  void erase(std::int64_t i) { p_.call_method("__delitem__", Tuple{{i}}); }
  // l.append(v), l.extend(v), and l.insert(i, v) (before index i, as Python's list.insert).
  void append(const T& v) { p_.call_method("append", Tuple{{to_py(v)}}); }
  void extend(const std::vector<T>& v) { p_.call_method("extend", Tuple{{to_py(v)}}); }
  void insert(std::int64_t i, const T& v) { p_.call_method("insert", Tuple{{i, to_py(v)}}); }
  // Removes and returns l[i] (the last by default); throws IndexError when out of range.
  T pop(std::int64_t i = -1) { return from_py<T>(p_.call_method("pop", Tuple{{i}})); }
  // Throws PythonException (ValueError) when absent, as Python does.
  void remove(const T& v) { p_.call_method("remove", Tuple{{to_py(v)}}); }
  std::size_t index(const T& v) {
    return from_py<std::size_t>(p_.call_method("index", Tuple{{to_py(v)}}));
  }
  std::size_t count(const T& v) {
    return from_py<std::size_t>(p_.call_method("count", Tuple{{to_py(v)}}));
  }
  bool contains(const T& v) {
    return from_py<bool>(p_.call_method("__contains__", Tuple{{to_py(v)}}));
  }
  std::size_t size() { return from_py<std::size_t>(p_.call_method("__len__")); }
  void reverse() { p_.call_method("reverse"); }
  // A copy of the whole list.
  std::vector<T> to_vector() { return from_py<std::vector<T>>(p_.get_value()); }
  BaseProxy& proxy() noexcept { return p_; }

 private:
  BaseProxy p_;
};

// A Value served by a manager (Python: ValueProxy, with get() and set()).
template <class T = PyObject>
class RemoteValue {
 public:
  // Wraps `p`, a proxy of a value (BaseManager::value makes one).
  explicit RemoteValue(BaseProxy p) : p_(std::move(p)) {}
  // The value now / replaces it. get throws TypeMismatch when the value is not a T.
  T get() { return from_py<T>(p_.call_method("get")); }
  void set(const T& v) { p_.call_method("set", Tuple{{to_py(v)}}); }
  // The untyped proxy underneath (call_method for any exposed method).
  BaseProxy& proxy() noexcept { return p_; }

 private:
  BaseProxy p_;
};

}  // namespace mpp::net
