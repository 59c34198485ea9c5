// Objects a BaseManager serves (Python: the "referents" a manager's server holds).
//
// One adapter per kind turns an object with mpp's C++ API into what a peer calls by Python's
// method names: ServedQueue (queue.Queue's methods), ServedDict (dict's), ServedList
// (list's), ServedValue (get/set). Each serves mpp's shared-memory objects — so a master
// can put tasks into an mpp::Queue that local processes consume while remote Python or mpp
// workers reach the same queue over TCP — and the plain in-process containers of local.hpp:
//
//   mpp::Queue<std::int64_t> tasks;                      // or Manager::queue<...>("tasks")
//   mgr.register_("get_task_queue", tasks);              // = register_(name, servable(tasks))
//   mgr.register_("get_results", std::make_shared<mpp::net::LocalQueue>());
//
// Values are converted with to_py/from_py<T> (pyobject.hpp): a peer's value that is not a T
// gets TypeError; a dict key or list element that cannot be a T is simply not there (KeyError,
// False, ValueError), as in Python. Dict keys go through dict_key first, so 1.0 and True find
// the key 1 of an mpp::Dict<std::int64_t, V>.
//
// Blocking calls (queue get/put/join) wait in slices of at most 100 ms and throw EOFError
// once interrupt() was called, so a server's shutdown never waits for a sleeping consumer;
// over shared memory, a local process's put still wakes a remote get at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mpp/dict.hpp"
#include "mpp/list.hpp"
#include "mpp/net/connection.hpp"
#include "mpp/net/exceptions.hpp"
#include "mpp/net/local.hpp"
#include "mpp/net/pyobject.hpp"
#include "mpp/queue.hpp"
#include "mpp/value.hpp"

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
  // As call(), but returns nullopt instead of waiting when the call would block (an empty
  // queue's get), having changed nothing; the server then runs call() where waiting is fine.
  virtual std::optional<PyObject> try_call(const std::string& method, const Tuple& args,
                                           const Dict& kwds) {
    return call(method, args, kwds);
  }
  // The whole value, for a peer's _getvalue() ('#GETVALUE'); nullopt when it has none to
  // send (a queue), which the peer sees as #UNSERIALIZABLE, as from Python.
  virtual std::optional<PyObject> value() const { return std::nullopt; }
  // Wakes every call blocked in this object: they throw EOFError. Called when the server
  // shuts down, so no served thread outlives it.
  virtual void interrupt() {}
};

// Reads Python-style arguments: positional index `i`, else keyword `name`, else nullptr.
const PyObject* argument(const Tuple& args, const Dict& kwds, std::size_t i, std::string_view name);

namespace detail {

// Argument readers and errors shared by the adapters (servable.cpp). Errors are Python's
// builtins exceptions (PythonException), so a Python peer sees exactly the type it expects.
[[noreturn]] void raise(const char* type, std::string message);
[[noreturn]] void raise_key_error(const PyObject& key);
[[noreturn]] void no_method(const std::string& method);
const PyObject& required(const Tuple& args, const Dict& kwds, std::size_t i, std::string_view name,
                         const std::string& method);
bool flag(const Tuple& args, const Dict& kwds, std::size_t i, std::string_view name, bool dflt);
// A `timeout` argument: None/absent -> nullopt; negative -> ValueError; over a year -> nullopt.
Timeout timeout_arg(const Tuple& args, const Dict& kwds, std::size_t i);
long long index_arg(const PyObject& v);
// The elements of a list, tuple or set argument (TypeError otherwise).
std::vector<PyObject> items_of(const PyObject& v);
// dict.update(other=(), **kwds) as a list of pairs.
std::vector<std::pair<PyObject, PyObject>> update_pairs(const Tuple& args, const Dict& kwds);
const std::vector<std::string>& queue_methods(bool joinable);
const std::vector<std::string>& dict_methods();
const std::vector<std::string>& list_methods(bool sortable);
const std::vector<std::string>& value_methods();

// `v` as a T, or nullopt when it cannot be one (a lookup of a value the container cannot hold).
template <class T>
std::optional<T> as_element(const PyObject& v) {
  if constexpr (std::is_same_v<T, PyObject>) {
    return v;
  } else {
    try {
      return from_py<T>(v);
    } catch (const TypeMismatch&) {
      return std::nullopt;
    }
  }
}

// A dict key as K: Python-equal keys (1, 1.0, True) give the same K.
template <class K>
std::optional<K> as_key(const PyObject& k) {
  if constexpr (std::is_same_v<K, PyObject>)
    return k;  // InProcessDict compares with dict_key itself
  else
    return as_element<K>(dict_key(k));
}

// Runs op(slice), a wait with a timeout that throws Expired when it gives up, in slices of at
// most 100 ms until it succeeds, `timeout` is over (Expired propagates) or `stop` is set
// (EOFError). The slices let a server shut down without waking the object's other users.
template <class Expired, class Op>
auto in_slices(Timeout timeout, const std::atomic<bool>& stop, Op op) {
  using C = std::chrono::steady_clock;
  std::optional<C::time_point> until;
  if (timeout) until = C::now() + std::chrono::duration_cast<C::duration>(*timeout);
  while (true) {
    if (stop.load(std::memory_order_relaxed)) throw EOFError("the manager is shutting down");
    C::duration slice = std::chrono::milliseconds(100);
    bool last = false;
    if (until) {
      auto left = *until - C::now();
      if (left <= slice) {
        slice = std::max(left, C::duration::zero());
        last = true;
      }
    }
    try {
      return op(slice);
    } catch (const Expired&) {
      if (last) throw;
    }
  }
}

}  // namespace detail

// Serves a queue: Q is mpp::Queue<T>, mpp::JoinableQueue<T> or InProcessQueue (anything
// with their API). task_done/join are exposed only when Q has them.
template <class Q>
class ServedQueue final : public Servable {
 public:
  // The served object's type, and the C++ type of its items.
  using Object = Q;
  using value_type = std::remove_cvref_t<decltype(std::declval<Q&>().get_nowait())>;
  // Constructs the object from `args` (a handle: a copy of an mpp::Queue shares the queue).
  template <class... A>
  explicit ServedQueue(A&&... args) : q_(std::forward<A>(args)...) {}
  // The served object itself, for the serving process's own C++ code. Peers' calls may run
  // at the same time on their connections' threads: no lock is added around the object's
  // own methods.
  Q& object() noexcept { return q_; }

  const std::vector<std::string>& exposed() const override {
    return detail::queue_methods(kJoinable);
  }
  PyObject call(const std::string& m, const Tuple& a, const Dict& k) override {
    return *dispatch(m, a, k, true);
  }
  std::optional<PyObject> try_call(const std::string& m, const Tuple& a, const Dict& k) override {
    return dispatch(m, a, k, false);
  }
  void interrupt() override { stop_ = true; }

 private:
  static constexpr bool kJoinable = requires(Q & q) {
    q.task_done();
    q.join();
  };

  std::optional<PyObject> dispatch(const std::string& m, const Tuple& a, const Dict& k,
                                   bool may_block) {
    if (m == "put" || m == "put_nowait") {
      auto item = from_py<value_type>(detail::required(a, k, 0, "item", m));
      if (m == "put_nowait" || !detail::flag(a, k, 1, "block", true)) {
        q_.put_nowait(item);
        return PyObject();
      }
      auto timeout = detail::timeout_arg(a, k, 2);
      if (!may_block) {
        try {
          q_.put_nowait(item);
          return PyObject();
        } catch (const Full&) {
          return std::nullopt;
        }
      }
      detail::in_slices<Full>(timeout, stop_, [&](auto slice) { return q_.put(item, slice), 0; });
      return PyObject();
    }
    if (m == "get" || m == "get_nowait") {
      if (m == "get_nowait" || !detail::flag(a, k, 0, "block", true)) return to_py(q_.get_nowait());
      auto timeout = detail::timeout_arg(a, k, 1);
      if (!may_block) {
        try {
          return to_py(q_.get_nowait());
        } catch (const Empty&) {
          return std::nullopt;
        }
      }
      return to_py(
          detail::in_slices<Empty>(timeout, stop_, [&](auto slice) { return q_.get(slice); }));
    }
    if (m == "qsize") return PyObject(q_.qsize());
    if (m == "empty") return PyObject(q_.empty());
    if (m == "full") return PyObject(q_.full());
    if constexpr (kJoinable) {
      if (m == "task_done") {
        q_.task_done();
        return PyObject();
      }
      if (m == "join") {
        if (!may_block) return std::nullopt;
        detail::in_slices<TimeoutError>(std::nullopt, stop_,
                                        [&](auto slice) { return q_.join(slice), 0; });
        return PyObject();
      }
    }
    detail::no_method(m);
  }

  Q q_;
  std::atomic<bool> stop_{false};
};

// Serves a dict: D is mpp::Dict<K, V> or InProcessDict.
template <class D>
class ServedDict final : public Servable {
 public:
  // The served object's type, and the C++ types of its keys and values.
  using Object = D;
  using K = typename D::key_type;
  using V = typename D::mapped_type;
  // Constructs the object from `args` (a handle: a copy of an mpp::Dict shares the dict).
  template <class... A>
  explicit ServedDict(A&&... args) : d_(std::forward<A>(args)...) {}
  // The served object itself, for the serving process's own C++ code. Peers' calls may run
  // at the same time on their connections' threads: no lock is added around the object's
  // own methods.
  D& object() noexcept { return d_; }

  const std::vector<std::string>& exposed() const override { return detail::dict_methods(); }
  std::optional<PyObject> value() const override { return as_dict(d_.items()); }

  PyObject call(const std::string& m, const Tuple& a, const Dict& k) override {
    auto key = [&]() -> const PyObject& { return detail::required(a, k, 0, "key", m); };
    auto dflt = [&] { return argument(a, k, 1, "default"); };
    if (m == "__getitem__" || m == "get") {
      if (auto kk = detail::as_key<K>(key()))
        if (auto v = d_.get(*kk)) return to_py(*v);
      if (m == "get") return dflt() ? *dflt() : PyObject();
      detail::raise_key_error(key());
    }
    if (m == "__setitem__") {
      d_.set(store_key(key()), from_py<V>(detail::required(a, k, 1, "value", m)));
      return {};
    }
    if (m == "setdefault")
      return to_py(d_.setdefault(store_key(key()), from_py<V>(dflt() ? *dflt() : PyObject())));
    if (m == "__contains__") {
      auto kk = detail::as_key<K>(key());
      return kk && d_.contains(*kk);
    }
    if (m == "__len__") return d_.size();
    if (m == "__delitem__" || m == "pop") {
      if (auto kk = detail::as_key<K>(key())) {
        try {
          PyObject v = to_py(d_.pop(*kk));
          return m == "pop" ? v : PyObject();
        } catch (const KeyError&) {
        }
      }
      if (m == "pop" && dflt()) return *dflt();
      detail::raise_key_error(key());
    }
    if (m == "popitem") return popitem();
    if (m == "clear") {
      d_.clear();
      return {};
    }
    if (m == "copy") return as_dict(d_.items());
    if (m == "keys" || m == "values" || m == "items") {
      List out;
      for (auto& [kk, vv] : d_.items())
        out.items.push_back(m == "keys" ? to_py(kk) : m == "values" ? to_py(vv) : py_tuple(kk, vv));
      return out;
    }
    if (m == "update") {
      std::vector<std::pair<K, V>> pairs;
      for (auto& [kk, vv] : detail::update_pairs(a, k))
        pairs.emplace_back(store_key(kk), from_py<V>(vv));
      d_.update(pairs);
      return {};
    }
    detail::no_method(m);
  }

 private:
  static K store_key(const PyObject& key) {
    if constexpr (std::is_same_v<K, PyObject>)
      return key;
    else
      return from_py<K>(dict_key(key));
  }
  template <class Pairs>
  static PyObject as_dict(const Pairs& items) {
    Dict out;
    out.items.reserve(items.size());
    for (auto& [kk, vv] : items) out.items.emplace_back(to_py(kk), to_py(vv));
    return out;
  }
  PyObject popitem() {
    if constexpr (requires { d_.popitem(); }) {
      auto [kk, vv] = d_.popitem();
      return py_tuple(kk, vv);
    } else {
      // mpp::Dict has no popitem: take the last key of a snapshot; another process may
      // take it first, then try the new last one.
      while (true) {
        auto keys = d_.keys();
        if (keys.empty()) detail::raise("KeyError", "popitem(): dictionary is empty");
        try {
          V v = d_.pop(keys.back());
          return py_tuple(keys.back(), v);
        } catch (const KeyError&) {
        }
      }
    }
  }

  D d_;
};

// Serves a list: L is mpp::List<T> or InProcessList. reverse/sort are exposed only when L
// has them (mpp::List has not: they would not be one atomic step).
template <class L>
class ServedList final : public Servable {
 public:
  // The served object's type, and the C++ type of its elements.
  using Object = L;
  using T = typename L::value_type;
  // Constructs the object from `args` (a handle: a copy of an mpp::List shares the list).
  template <class... A>
  explicit ServedList(A&&... args) : l_(std::forward<A>(args)...) {}
  // The served object itself, for the serving process's own C++ code. Peers' calls may run
  // at the same time on their connections' threads: no lock is added around the object's
  // own methods.
  L& object() noexcept { return l_; }

  const std::vector<std::string>& exposed() const override {
    return detail::list_methods(kSortable);
  }
  std::optional<PyObject> value() const override { return to_py(l_.to_vector()); }

  PyObject call(const std::string& m, const Tuple& a, const Dict& k) override {
    auto arg = [&](std::size_t i, std::string_view name) -> const PyObject& {
      return detail::required(a, k, i, name, m);
    };
    auto index = [&] {
      if (arg(0, "index").template is<Slice>())
        detail::raise("TypeError",
                      "mpp's served lists take a slice only in l[i:j] reads, not in " + m);
      return detail::index_arg(arg(0, "index"));
    };
    if (m == "__getitem__") {
      if (const PyObject& i = arg(0, "index"); i.is<Slice>()) {
        // One snapshot, so the slice is of one state of the list.
        std::vector<T> all = l_.to_vector();
        List out;
        for (std::size_t k : i.get<Slice>().indices(all.size())) out.items.push_back(to_py(all[k]));
        return out;
      }
      return to_py(l_.get(index()));
    }
    if (m == "__setitem__") {
      l_.set(index(), from_py<T>(arg(1, "value")));
      return {};
    }
    if (m == "__delitem__") {
      l_.pop(index());
      return {};
    }
    if (m == "__len__") return l_.size();
    if (m == "append") {
      l_.append(from_py<T>(arg(0, "object")));
      return {};
    }
    if (m == "extend") {
      std::vector<T> more;
      for (auto& v : detail::items_of(arg(0, "iterable"))) more.push_back(from_py<T>(v));
      l_.extend(more);
      return {};
    }
    if (m == "insert") {
      l_.insert(index(), from_py<T>(arg(1, "object")));
      return {};
    }
    if (m == "pop") {
      auto* i = argument(a, k, 0, "index");
      return to_py(l_.pop(i ? detail::index_arg(*i) : -1));
    }
    if (m == "__contains__" || m == "count" || m == "index" || m == "remove") {
      const PyObject& x = arg(0, "value");
      auto v = detail::as_element<T>(x);
      if (m == "__contains__") return v && l_.count(*v) > 0;
      if (m == "count") return v ? l_.count(*v) : 0;
      if (!v) detail::raise("ValueError", repr(x) + " is not in list");
      if (m == "remove") {
        l_.remove(*v);
        return {};
      }
      auto* start = argument(a, k, 1, "start");
      return l_.index(*v, start ? from_py<std::size_t>(*start) : 0);
    }
    if constexpr (kSortable) {
      if (m == "reverse") {
        l_.reverse();
        return {};
      }
      if (m == "sort") {
        l_.sort(detail::flag(Tuple{}, k, 0, "reverse", false));
        return {};
      }
    }
    detail::no_method(m);
  }

 private:
  static constexpr bool kSortable = requires(L & l) {
    l.reverse();
    l.sort(true);
  };
  L l_;
};

// Serves a value with get()/set(): V is mpp::Value<T> or InProcessValue.
template <class V>
class ServedValue final : public Servable {
 public:
  // The served object's type, and the C++ type of its value.
  using Object = V;
  using T = std::remove_cvref_t<decltype(std::declval<const V&>().value())>;
  // Constructs the object from `args` (a handle: a copy of an mpp::Value shares the value).
  template <class... A>
  explicit ServedValue(A&&... args) : v_(std::forward<A>(args)...) {}
  // The served object itself, for the serving process's own C++ code. Peers' calls may run
  // at the same time on their connections' threads: no lock is added around the object's
  // own methods.
  V& object() noexcept { return v_; }

  const std::vector<std::string>& exposed() const override { return detail::value_methods(); }
  std::optional<PyObject> value() const override { return to_py(v_.value()); }
  PyObject call(const std::string& m, const Tuple& a, const Dict& k) override {
    if (m == "get") return to_py(v_.value());
    if (m == "set") {
      v_.set_value(from_py<T>(detail::required(a, k, 0, "value", m)));
      return {};
    }
    detail::no_method(m);
  }

 private:
  V v_;
};

// The plain in-process objects, as a Python manager's server holds them.
using LocalQueue = ServedQueue<InProcessQueue>;
using LocalDict = ServedDict<InProcessDict>;
using LocalList = ServedList<InProcessList>;
using LocalValue = ServedValue<InProcessValue>;

// A Servable for an mpp object: the served object is a handle on the same shared-memory
// object, so local processes and remote peers use it at once.
template <class T>
std::shared_ptr<Servable> servable(const Queue<T>& q) {
  return std::make_shared<ServedQueue<Queue<T>>>(q);
}
template <class T>
std::shared_ptr<Servable> servable(const JoinableQueue<T>& q) {
  return std::make_shared<ServedQueue<JoinableQueue<T>>>(q);
}
template <class K, class V>
std::shared_ptr<Servable> servable(const mpp::Dict<K, V>& d) {
  return std::make_shared<ServedDict<mpp::Dict<K, V>>>(d);
}
template <class T>
std::shared_ptr<Servable> servable(const mpp::List<T>& l) {
  return std::make_shared<ServedList<mpp::List<T>>>(l);
}
template <class T>
std::shared_ptr<Servable> servable(const Value<T>& v) {
  return std::make_shared<ServedValue<Value<T>>>(v);
}

}  // namespace mpp::net
