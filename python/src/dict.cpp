// mpp.Dict: a Manager's Dict<K, V> with Python's mapping protocol.
//
// One Python class for every pair of types: DictBase is the type-erased interface, DictImpl
// the instantiation of mpp::Dict for the C++ types of the handle's Python types. Arguments
// are converted to C++ values with the GIL held; the call on the shared dict runs with the
// GIL released (it may wait for the dict's lock); results become Python objects with the GIL
// held again.
#include <vector>

#include "fast.hpp"
#include "module.hpp"

namespace mpp::python {
namespace {

struct DictBase {
  DictBase(std::string name, Kind key, Kind value) : name(std::move(name)), key(key), value(value) {}
  virtual ~DictBase() = default;
  virtual py::object getitem(py::handle k) = 0;
  virtual py::object get(py::handle k, py::object default_value) = 0;
  virtual void setitem(py::handle k, py::handle v) = 0;
  virtual void delitem(py::handle k) = 0;
  virtual bool contains(py::handle k) = 0;
  virtual std::size_t len() = 0;
  virtual py::object pop(py::handle k, py::object default_value, bool has_default) = 0;
  virtual py::object setdefault(py::handle k, py::handle v) = 0;
  virtual py::list keys() = 0;
  virtual py::list values() = 0;
  virtual py::list items() = 0;
  virtual void update(const std::vector<std::pair<py::object, py::object>>& pairs) = 0;
  virtual void clear() = 0;
  virtual py::object add(py::handle k, py::handle delta, py::handle initial) = 0;
  virtual py::object modify(py::handle k, py::function fn, py::handle initial) = 0;
  virtual std::string check() = 0;

  std::string name;
  std::string segment;  // the Manager segment's name, for pickling
  Kind key;
  Kind value;
};

template <class K, class V>
struct DictImpl final : DictBase {
  DictImpl(Manager& m, const std::string& n, Kind k, Kind v)
      : DictBase(n, k, v), d(without_gil([&] { return m.dict<K, V>(n); })) {}

  K k_of(py::handle h) const { return Conv<K>::from(h, key, "key"); }
  V v_of(py::handle h) const { return Conv<V>::from(h, value, "value"); }
  py::object py_k(const K& x) const { return Conv<K>::to(x, key); }
  py::object py_v(const V& x) const { return Conv<V>::to(x, value); }

  py::object getitem(py::handle h) override {
    K k = k_of(h);
    auto v = without_gil([&] { return d.get(k); });
    if (!v) throw py::key_error(std::string(py::repr(h)));
    return py_v(*v);
  }
  py::object get(py::handle h, py::object default_value) override {
    K k = k_of(h);
    auto v = without_gil([&] { return d.get(k); });
    return v ? py_v(*v) : default_value;
  }
  void setitem(py::handle h, py::handle x) override {
    K k = k_of(h);
    V v = v_of(x);
    without_gil([&] { d.set(k, v); });
  }
  void delitem(py::handle h) override {
    K k = k_of(h);
    if (!without_gil([&] { return d.erase(k); })) throw py::key_error(std::string(py::repr(h)));
  }
  bool contains(py::handle h) override {
    K k;
    try {
      k = k_of(h);
    } catch (const py::type_error&) {
      return false;  // a key of another type is not in the dict (as 1.5 in {"a": 1})
    }
    return without_gil([&] { return d.contains(k); });
  }
  std::size_t len() override { return d.size(); }
  py::object pop(py::handle h, py::object default_value, bool has_default) override {
    K k = k_of(h);
    std::optional<V> v = without_gil([&]() -> std::optional<V> {
      try {
        return d.pop(k);
      } catch (const mpp::KeyError&) {
        return std::nullopt;
      }
    });
    if (v) return py_v(*v);
    if (has_default) return default_value;
    throw py::key_error(std::string(py::repr(h)));
  }
  py::object setdefault(py::handle h, py::handle x) override {
    K k = k_of(h);
    V v = v_of(x);
    return py_v(without_gil([&] { return d.setdefault(k, v); }));
  }
  py::list keys() override {
    auto ks = without_gil([&] { return d.keys(); });
    py::list out(ks.size());
    for (std::size_t i = 0; i < ks.size(); ++i) out[i] = py_k(ks[i]);
    return out;
  }
  py::list values() override {
    auto vs = without_gil([&] { return d.values(); });
    py::list out(vs.size());
    for (std::size_t i = 0; i < vs.size(); ++i) out[i] = py_v(vs[i]);
    return out;
  }
  py::list items() override {
    auto is = without_gil([&] { return d.items(); });
    py::list out(is.size());
    for (std::size_t i = 0; i < is.size(); ++i) out[i] = py::make_tuple(py_k(is[i].first), py_v(is[i].second));
    return out;
  }
  void update(const std::vector<std::pair<py::object, py::object>>& pairs) override {
    std::vector<std::pair<K, V>> cpp;
    cpp.reserve(pairs.size());
    for (auto& [k, v] : pairs) cpp.emplace_back(k_of(k), v_of(v));
    without_gil([&] { d.update(cpp); });
  }
  void clear() override { without_gil([&] { d.clear(); }); }
  py::object add(py::handle h, py::handle delta, py::handle initial) override {
    if constexpr (std::is_same_v<V, std::int64_t> || std::is_same_v<V, double>) {
      K k = k_of(h);
      V dv = v_of(delta);
      V iv = v_of(initial);
      return py_v(without_gil([&] {
        return d.modify(k, [&](V& x) {
          if constexpr (std::is_same_v<V, std::int64_t>) {
            // Wraps around as C++'s std::atomic does rather than overflow (undefined).
            x = static_cast<V>(static_cast<std::uint64_t>(x) + static_cast<std::uint64_t>(dv));
          } else {
            x += dv;
          }
        }, iv);
      }));
    } else {
      throw py::type_error(std::string("add() needs value=int or value=float; this dict's values are ") +
                           kind_name(value) + " (use modify())");
    }
  }
  py::object modify(py::handle h, py::function fn, py::handle initial) override {
    K k = k_of(h);
    V iv = v_of(initial);
    // fn runs under the dict's exclusive lock, with the GIL taken back for it. If it raises,
    // modify() stores nothing and the exception propagates.
    V out = without_gil([&] {
      return d.modify(k, [&](V& x) {
        py::gil_scoped_acquire gil;
        py::object r = fn(py_v(x));
        x = v_of(r);
      }, iv);
    });
    return py_v(out);
  }
  std::string check() override { return without_gil([&] { return d.check(); }); }

  Dict<K, V> d;
};

std::unique_ptr<DictBase> open_dict(Manager& m, const std::string& name, Kind k, Kind v) {
  return with_type(k, [&]<class K>() -> std::unique_ptr<DictBase> {
    if constexpr (std::is_same_v<K, Pickled>) {
      throw std::logic_error("unreachable: object keys are refused by kind_of");
    } else {
      return with_type(v, [&]<class V>() -> std::unique_ptr<DictBase> {
        return std::make_unique<DictImpl<K, V>>(m, name, k, v);
      });
    }
  });
}

// Python's dict.update argument forms: a mapping (anything with keys()), or pairs; then kwargs.
std::vector<std::pair<py::object, py::object>> pairs_of(py::object other, py::kwargs kwargs) {
  std::vector<std::pair<py::object, py::object>> out;
  if (!other.is_none()) {
    if (py::hasattr(other, "keys")) {
      for (py::handle k : other.attr("keys")()) {
        out.emplace_back(py::reinterpret_borrow<py::object>(k), other[k]);
      }
    } else {
      for (py::handle item : other) {
        py::tuple t = py::tuple(py::reinterpret_borrow<py::object>(item));
        if (t.size() != 2) {
          throw py::value_error("dictionary update sequence element has length " + std::to_string(t.size()) +
                                "; 2 is required");
        }
        out.emplace_back(t[0], t[1]);
      }
    }
  }
  for (auto [k, v] : kwargs) out.emplace_back(py::reinterpret_borrow<py::object>(k), py::reinterpret_borrow<py::object>(v));
  return out;
}

// The type slots of d[k], d[k] = v, del d[k], len(d) and `k in d` (see fast.hpp).
PyObject* subscript(PyObject* self, PyObject* key) {
  return fast::guarded([&] { return fast::self_of<DictBase>(self).getitem(key); });
}
int assign_subscript(PyObject* self, PyObject* key, PyObject* value) {
  try {
    auto& d = fast::self_of<DictBase>(self);
    if (value != nullptr) {
      d.setitem(key, value);
    } else {
      d.delitem(key);
    }
    return 0;
  } catch (...) {
    fast::set_python_error();
    return -1;
  }
}
Py_ssize_t length(PyObject* self) {
  return static_cast<Py_ssize_t>(fast::self_of<DictBase>(self).len());
}
int contains(PyObject* self, PyObject* key) {
  try {
    return fast::self_of<DictBase>(self).contains(key) ? 1 : 0;
  } catch (...) {
    fast::set_python_error();
    return -1;
  }
}

}  // namespace

void bind_dict(py::module_& m, py::class_<Manager>& manager) {
  py::class_<DictBase> cls(m, "Dict", R"(A dict in shared memory (collections.abc.MutableMapping).

Every method is one atomic step under the dict's lock. Iteration, keys(), values() and items()
work on a consistent snapshot, in insertion order. add(k, delta) and modify(k, fn) are the
atomic read-modify-write steps.)");
  cls.def("__getitem__", &DictBase::getitem)
      .def("__setitem__", &DictBase::setitem)
      .def("__delitem__", &DictBase::delitem)
      .def("__contains__", &DictBase::contains)
      .def("__len__", &DictBase::len)
      .def("__iter__", [](DictBase& d) { return py::iter(d.keys()); })
      .def("get", &DictBase::get, py::arg("key"), py::arg("default") = py::none())
      .def("pop", [](DictBase& d, py::handle k, py::args rest) {
             if (rest.size() > 1) throw py::type_error("pop expected at most 2 arguments, got " + std::to_string(rest.size() + 1));
             return rest.empty() ? d.pop(k, py::none(), false) : d.pop(k, rest[0], true);
           })
      .def("setdefault", &DictBase::setdefault, py::arg("key"), py::arg("default"))
      .def("keys", &DictBase::keys, "A list of the keys (a snapshot).")
      .def("values", &DictBase::values, "A list of the values (a snapshot).")
      .def("items", &DictBase::items, "A list of (key, value) pairs (a snapshot).")
      .def("update", [](DictBase& d, py::object other, py::kwargs kwargs) { d.update(pairs_of(other, kwargs)); },
           py::arg("other") = py::none(), "Sets all the pairs or, when the segment is full, none of them.")
      .def("clear", &DictBase::clear)
      .def("add", &DictBase::add, py::arg("key"), py::arg("delta") = 1, py::arg("initial") = 0,
           "Atomically adds `delta` to the value of `key` (`initial` if absent) and returns the new "
           "value. value=int or value=float only.")
      .def("modify", &DictBase::modify, py::arg("key"), py::arg("fn"), py::arg("initial"),
           "Atomically replaces the value v of `key` (`initial` if absent) by fn(v) and returns it. fn "
           "runs under the dict's exclusive lock: keep it short and do not use this dict in it. If fn "
           "raises, nothing changes.")
      .def("check", &DictBase::check, "What is wrong with the dict's structure ('' when sound).")
      .def_property_readonly("name", [](DictBase& d) { return d.name; })
      .def_property_readonly("segment", [](DictBase& d) { return d.segment; })
      .def_property_readonly("key_type", [](DictBase& d) { return kind_type(d.key); })
      .def_property_readonly("value_type", [](DictBase& d) { return kind_type(d.value); });
  // After the pybind11 definitions above, which set these slots to their generic wrappers.
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  type->tp_as_mapping->mp_subscript = subscript;
  type->tp_as_mapping->mp_ass_subscript = assign_subscript;
  type->tp_as_mapping->mp_length = length;
  type->tp_as_sequence->sq_length = length;
  type->tp_as_sequence->sq_contains = contains;

  manager.def(
      "dict",
      [](Manager& mg, const std::string& name, py::handle key, py::handle value) {
        auto d = open_dict(mg, name, kind_of(key, "key", false), kind_of(value, "value"));
        d->segment = mg.name();
        return d;
      },
      py::arg("name"), py::arg("key") = kind_type(Kind::str), py::arg("value") = kind_type(Kind::object),
      R"(The shared dict `name`, made empty if new. key: int, float, str, bytes or bool; value: those
or object (pickled, Python only). TypeError (mpp.TypeMismatch) if `name` exists with other types.)");
}

}  // namespace mpp::python
