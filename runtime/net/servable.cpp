#include "mpp/net/servable.hpp"

#include <algorithm>

namespace mpp::net {

const PyObject* argument(const Tuple& args, const Dict& kwds, std::size_t i, std::string_view name) {
  if (i < args.items.size()) return &args.items[i];
  return kwds.find(PyObject(name));
}

namespace detail {

void raise(const char* type, std::string message) {
  throw PythonException(ExceptionValue{"builtins", type, {PyObject(std::move(message))}, {}});
}

void raise_key_error(const PyObject& key) { throw PythonException(ExceptionValue{"builtins", "KeyError", {key}, {}}); }

void no_method(const std::string& method) { raise("AttributeError", "no method '" + method + "'"); }

const PyObject& required(const Tuple& args, const Dict& kwds, std::size_t i, std::string_view name,
                         const std::string& method) {
  if (auto* p = argument(args, kwds, i, name)) return *p;
  raise("TypeError", method + "() missing required argument '" + std::string(name) + "'");
}

bool flag(const Tuple& args, const Dict& kwds, std::size_t i, std::string_view name, bool dflt) {
  auto* p = argument(args, kwds, i, name);
  return p ? from_py<bool>(*p) : dflt;
}

Timeout timeout_arg(const Tuple& args, const Dict& kwds, std::size_t i) {
  auto* p = argument(args, kwds, i, "timeout");
  if (!p || p->is<None>()) return std::nullopt;
  double t = from_py<double>(*p);
  if (!(t >= 0)) raise("ValueError", "'timeout' must be a non-negative number");
  if (t > 3.2e7) return std::nullopt;  // over a year: for ever (and no time_point overflow)
  return std::chrono::duration<double>(t);
}

long long index_arg(const PyObject& v) { return from_py<long long>(v); }

std::vector<PyObject> items_of(const PyObject& v) {
  if (v.is<List>()) return v.get<List>().items;
  if (v.is<Tuple>()) return v.get<Tuple>().items;
  if (v.is<Set>()) return v.get<Set>().items;
  raise("TypeError", "'" + v.type_name() + "' object is not iterable here");
}

std::vector<std::pair<PyObject, PyObject>> update_pairs(const Tuple& a, const Dict& k) {
  std::vector<std::pair<PyObject, PyObject>> out;
  if (auto* other = argument(a, k, 0, "other")) {
    if (other->is<Dict>()) {
      out = other->get<Dict>().items;
    } else {
      for (auto& pair : items_of(*other)) {
        auto kv = items_of(pair);
        if (kv.size() != 2) raise("ValueError", "dictionary update sequence element has the wrong length");
        out.emplace_back(kv[0], kv[1]);
      }
    }
  }
  // Keywords are pairs too, except `other` when it was the positional's keyword form.
  for (auto& [kk, vv] : k.items)
    if (!a.items.empty() || !(kk == PyObject("other"))) out.emplace_back(kk, vv);
  return out;
}

const std::vector<std::string>& queue_methods(bool joinable) {
  static const std::vector<std::string> all = {"empty", "full", "get", "get_nowait", "join",
                                               "put", "put_nowait", "qsize", "task_done"};
  static const std::vector<std::string> plain = {"empty", "full", "get", "get_nowait", "put", "put_nowait", "qsize"};
  return joinable ? all : plain;
}

const std::vector<std::string>& dict_methods() {
  static const std::vector<std::string> names = {
      "__contains__", "__delitem__", "__getitem__", "__len__", "__setitem__", "clear", "copy",
      "get",          "items",       "keys",        "pop",     "popitem",     "setdefault", "update", "values"};
  return names;
}

const std::vector<std::string>& list_methods(bool sortable) {
  static const std::vector<std::string> all = {
      "__contains__", "__delitem__", "__getitem__", "__len__", "__setitem__", "append", "count",
      "extend",       "index",       "insert",      "pop",     "remove",      "reverse", "sort"};
  static const std::vector<std::string> unsorted = {"__contains__", "__delitem__", "__getitem__", "__len__",
                                                    "__setitem__",  "append",      "count",       "extend",
                                                    "index",        "insert",      "pop",         "remove"};
  return sortable ? all : unsorted;
}

const std::vector<std::string>& value_methods() {
  static const std::vector<std::string> names = {"get", "set"};
  return names;
}

}  // namespace detail
}  // namespace mpp::net
