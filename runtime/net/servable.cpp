#include "mpp/net/servable.hpp"

#include <algorithm>

namespace mpp::net {
namespace {

[[noreturn]] void raise(const char* name, std::string message) {
  throw PythonException(ExceptionValue{"builtins", name, {PyObject(std::move(message))}, {}});
}

const PyObject& required(const Tuple& args, const Dict& kwds, std::size_t i, std::string_view name,
                         const std::string& method) {
  if (auto* p = argument(args, kwds, i, name)) return *p;
  raise("TypeError", method + "() missing required argument '" + std::string(name) + "'");
}

bool flag(const Tuple& args, const Dict& kwds, std::size_t i, std::string_view name, bool dflt) {
  auto* p = argument(args, kwds, i, name);
  return p ? from_py<bool>(*p) : dflt;
}

std::optional<std::chrono::duration<double>> timeout_arg(const Tuple& args, const Dict& kwds, std::size_t i) {
  auto* p = argument(args, kwds, i, "timeout");
  if (!p || p->is<None>()) return std::nullopt;
  double t = from_py<double>(*p);
  if (t < 0) raise("ValueError", "'timeout' must be a non-negative number");
  return std::chrono::duration<double>(t);
}

std::int64_t index_arg(const PyObject& v, std::size_t size, bool for_insert = false) {
  auto i = from_py<std::int64_t>(v);
  auto n = static_cast<std::int64_t>(size);
  if (i < 0) i += n;
  if (for_insert) return std::clamp<std::int64_t>(i, 0, n);
  if (i < 0 || i >= n) raise("IndexError", "list index out of range");
  return i;
}

std::vector<PyObject> items_of(const PyObject& v) {
  if (v.is<List>()) return v.get<List>().items;
  if (v.is<Tuple>()) return v.get<Tuple>().items;
  if (v.is<Set>()) return v.get<Set>().items;
  raise("TypeError", "'" + v.type_name() + "' object is not iterable here");
}

[[noreturn]] void no_method(const std::string& method) {
  raise("AttributeError", "no method '" + method + "'");
}

}  // namespace

const PyObject* argument(const Tuple& args, const Dict& kwds, std::size_t i, std::string_view name) {
  if (i < args.items.size()) return &args.items[i];
  return kwds.find(PyObject(name));
}

// ----- LocalQueue -------------------------------------------------------------------------

const std::vector<std::string>& LocalQueue::exposed() const {
  static const std::vector<std::string> names = {"empty", "full", "get", "get_nowait", "join",
                                                 "put", "put_nowait", "qsize", "task_done"};
  return names;
}

template <class Pred>
bool LocalQueue::wait(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                      std::optional<std::chrono::duration<double>> timeout, Pred pred) {
  auto ready = [&] { return interrupted_ || pred(); };
  if (!timeout) {
    cv.wait(lock, ready);
  } else {
    auto until = std::chrono::steady_clock::now() +
                 std::chrono::duration_cast<std::chrono::steady_clock::duration>(*timeout);
    if (!cv.wait_until(lock, until, ready)) return false;
  }
  if (interrupted_) throw EOFError("the manager is shutting down");
  return true;
}

void LocalQueue::put(PyObject item, bool block, std::optional<std::chrono::duration<double>> timeout) {
  std::unique_lock lock(mu_);
  auto room = [&] { return maxsize_ == 0 || items_.size() < maxsize_; };
  if (!block) {
    if (!room()) throw Full("the queue is full");
  } else if (!wait(lock, not_full_, timeout, room)) {
    throw Full("the queue stayed full for the whole timeout");
  }
  items_.push_back(std::move(item));
  ++unfinished_;
  not_empty_.notify_one();
}

PyObject LocalQueue::get(bool block, std::optional<std::chrono::duration<double>> timeout) {
  std::unique_lock lock(mu_);
  auto any = [&] { return !items_.empty(); };
  if (!block) {
    if (!any()) throw Empty("the queue is empty");
  } else if (!wait(lock, not_empty_, timeout, any)) {
    throw Empty("the queue stayed empty for the whole timeout");
  }
  PyObject v = std::move(items_.front());
  items_.pop_front();
  not_full_.notify_one();
  return v;
}

std::size_t LocalQueue::qsize() const {
  std::lock_guard lock(mu_);
  return items_.size();
}

void LocalQueue::task_done() {
  std::lock_guard lock(mu_);
  if (unfinished_ == 0) raise("ValueError", "task_done() called too many times");
  if (--unfinished_ == 0) all_done_.notify_all();
}

void LocalQueue::join() {
  std::unique_lock lock(mu_);
  wait(lock, all_done_, std::nullopt, [&] { return unfinished_ == 0; });
}

void LocalQueue::interrupt() {
  std::lock_guard lock(mu_);
  interrupted_ = true;
  not_empty_.notify_all();
  not_full_.notify_all();
  all_done_.notify_all();
}

PyObject LocalQueue::call(const std::string& m, const Tuple& a, const Dict& k) {
  if (m == "put") {
    put(required(a, k, 0, "item", m), flag(a, k, 1, "block", true), timeout_arg(a, k, 2));
    return {};
  }
  if (m == "put_nowait") {
    put(required(a, k, 0, "item", m), false);
    return {};
  }
  if (m == "get") return get(flag(a, k, 0, "block", true), timeout_arg(a, k, 1));
  if (m == "get_nowait") return get(false);
  if (m == "qsize") return qsize();
  if (m == "empty") return qsize() == 0;
  if (m == "full") {
    std::lock_guard lock(mu_);
    return maxsize_ > 0 && items_.size() >= maxsize_;
  }
  if (m == "task_done") {
    task_done();
    return {};
  }
  if (m == "join") {
    join();
    return {};
  }
  no_method(m);
}

// ----- LocalDict --------------------------------------------------------------------------

const std::vector<std::string>& LocalDict::exposed() const {
  static const std::vector<std::string> names = {
      "__contains__", "__delitem__", "__getitem__", "__len__", "__setitem__", "clear", "copy",
      "get",          "items",       "keys",        "pop",     "popitem",     "setdefault", "update", "values"};
  return names;
}

void LocalDict::erase_at(std::size_t i) {
  index_.erase(d_.items[i].first);
  d_.items.erase(d_.items.begin() + static_cast<std::ptrdiff_t>(i));
  for (auto& [key, pos] : index_)
    if (pos > i) --pos;
}

void LocalDict::set(const PyObject& k, PyObject v) {
  auto it = index_.find(k);
  if (it != index_.end()) {
    d_.items[it->second].second = std::move(v);
  } else {
    index_.emplace(k, d_.items.size());
    d_.items.emplace_back(k, std::move(v));
  }
}

std::optional<PyObject> LocalDict::value() const {
  std::lock_guard lock(mu_);
  return PyObject(d_);
}

PyObject LocalDict::call(const std::string& m, const Tuple& a, const Dict& k) {
  std::lock_guard lock(mu_);
  auto key = [&] { return required(a, k, 0, "key", m); };
  auto find = [&](const PyObject& key) -> const PyObject* {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &d_.items[it->second].second;
  };
  if (m == "__getitem__") {
    if (auto* v = find(key())) return *v;
    throw PythonException(ExceptionValue{"builtins", "KeyError", {key()}, {}});
  }
  if (m == "get") {
    if (auto* v = find(key())) return *v;
    auto* d = argument(a, k, 1, "default");
    return d ? *d : PyObject();
  }
  if (m == "__setitem__") {
    set(key(), required(a, k, 1, "value", m));
    return {};
  }
  if (m == "setdefault") {
    if (auto* v = find(key())) return *v;
    auto* d = argument(a, k, 1, "default");
    set(key(), d ? *d : PyObject());
    return d ? *d : PyObject();
  }
  if (m == "__contains__") return find(key()) != nullptr;
  if (m == "__len__") return d_.items.size();
  if (m == "__delitem__" || m == "pop") {
    auto it = index_.find(key());
    if (it == index_.end()) {
      if (m == "pop")
        if (auto* d = argument(a, k, 1, "default")) return *d;
      throw PythonException(ExceptionValue{"builtins", "KeyError", {key()}, {}});
    }
    std::size_t i = it->second;
    PyObject v = d_.items[i].second;
    erase_at(i);
    return m == "pop" ? v : PyObject();
  }
  if (m == "popitem") {
    if (d_.items.empty()) raise("KeyError", "popitem(): dictionary is empty");
    Tuple t{{d_.items.back().first, d_.items.back().second}};
    erase_at(d_.items.size() - 1);
    return t;
  }
  if (m == "clear") {
    d_.items.clear();
    index_.clear();
    return {};
  }
  if (m == "copy") return d_;
  if (m == "keys" || m == "values" || m == "items") {
    List out;
    for (auto& [kk, vv] : d_.items)
      out.items.push_back(m == "keys" ? kk : m == "values" ? vv : PyObject(Tuple{{kk, vv}}));
    return out;
  }
  if (m == "update") {
    if (auto* other = argument(a, k, 0, "other")) {
      if (other->is<Dict>()) {
        for (auto& [kk, vv] : other->get<Dict>().items) set(kk, vv);
      } else {
        for (auto& pair : items_of(*other)) {
          auto kv = items_of(pair);
          if (kv.size() != 2) raise("ValueError", "dictionary update sequence element has the wrong length");
          set(kv[0], kv[1]);
        }
      }
    }
    for (auto& [kk, vv] : k.items)
      if (a.items.size() > 0 || !(kk == PyObject("other"))) set(kk, vv);
    return {};
  }
  no_method(m);
}

// ----- LocalList --------------------------------------------------------------------------

const std::vector<std::string>& LocalList::exposed() const {
  static const std::vector<std::string> names = {
      "__contains__", "__delitem__", "__getitem__", "__len__", "__setitem__", "append", "count",
      "extend",       "index",       "insert",      "pop",     "remove",      "reverse", "sort"};
  return names;
}

std::optional<PyObject> LocalList::value() const {
  std::lock_guard lock(mu_);
  return PyObject(List{items_});
}

PyObject LocalList::call(const std::string& m, const Tuple& a, const Dict& k) {
  std::lock_guard lock(mu_);
  auto arg = [&](std::size_t i, std::string_view name) -> const PyObject& { return required(a, k, i, name, m); };
  auto find = [&](const PyObject& v) { return std::find(items_.begin(), items_.end(), v); };
  if (m == "__getitem__") return items_[static_cast<std::size_t>(index_arg(arg(0, "index"), items_.size()))];
  if (m == "__setitem__") {
    items_[static_cast<std::size_t>(index_arg(arg(0, "index"), items_.size()))] = arg(1, "value");
    return {};
  }
  if (m == "__delitem__") {
    items_.erase(items_.begin() + index_arg(arg(0, "index"), items_.size()));
    return {};
  }
  if (m == "__len__") return items_.size();
  if (m == "__contains__") return find(arg(0, "value")) != items_.end();
  if (m == "append") {
    items_.push_back(arg(0, "object"));
    return {};
  }
  if (m == "extend") {
    auto more = items_of(arg(0, "iterable"));
    items_.insert(items_.end(), more.begin(), more.end());
    return {};
  }
  if (m == "insert") {
    items_.insert(items_.begin() + index_arg(arg(0, "index"), items_.size(), true), arg(1, "object"));
    return {};
  }
  if (m == "pop") {
    if (items_.empty()) raise("IndexError", "pop from empty list");
    auto* i = argument(a, k, 0, "index");
    auto at = i ? index_arg(*i, items_.size()) : static_cast<std::int64_t>(items_.size()) - 1;
    PyObject v = std::move(items_[static_cast<std::size_t>(at)]);
    items_.erase(items_.begin() + at);
    return v;
  }
  if (m == "remove") {
    auto it = find(arg(0, "value"));
    if (it == items_.end()) raise("ValueError", "list.remove(x): x not in list");
    items_.erase(it);
    return {};
  }
  if (m == "index") {
    auto it = find(arg(0, "value"));
    if (it == items_.end()) raise("ValueError", repr(arg(0, "value")) + " is not in list");
    return it - items_.begin();
  }
  if (m == "count") return std::count(items_.begin(), items_.end(), arg(0, "value"));
  if (m == "reverse") {
    std::reverse(items_.begin(), items_.end());
    return {};
  }
  if (m == "sort") {
    bool rev = flag(a, k, 99, "reverse", false);
    std::stable_sort(items_.begin(), items_.end());
    if (rev) std::reverse(items_.begin(), items_.end());
    return {};
  }
  no_method(m);
}

// ----- LocalValue -------------------------------------------------------------------------

const std::vector<std::string>& LocalValue::exposed() const {
  static const std::vector<std::string> names = {"get", "set"};
  return names;
}

std::optional<PyObject> LocalValue::value() const {
  std::lock_guard lock(mu_);
  return v_;
}

PyObject LocalValue::call(const std::string& m, const Tuple& a, const Dict& k) {
  std::lock_guard lock(mu_);
  if (m == "get") return v_;
  if (m == "set") {
    v_ = required(a, k, 0, "value", m);
    return {};
  }
  no_method(m);
}

}  // namespace mpp::net
