// mpp.List: a Manager's List<T> with Python's sequence protocol (as dict.cpp: type-erased
// interface, one instantiation per item type, the GIL released around the shared list).
#include <vector>

#include "module.hpp"

#include <pybind11/stl.h>

namespace mpp::python {
namespace {

struct ListBase {
  ListBase(std::string name, Kind item) : name(std::move(name)), item(item) {}
  virtual ~ListBase() = default;
  virtual py::object getitem(long long i) = 0;
  virtual void setitem(long long i, py::handle v) = 0;
  virtual py::object pop(long long i) = 0;
  virtual void append(py::handle v) = 0;
  virtual void extend(py::iterable values) = 0;
  virtual void insert(long long i, py::handle v) = 0;
  virtual void remove(py::handle v) = 0;
  virtual std::size_t index(py::handle v, std::size_t start) = 0;
  virtual std::size_t count(py::handle v) = 0;
  virtual std::size_t len() = 0;
  virtual void clear() = 0;
  virtual py::list tolist() = 0;
  virtual std::string check() = 0;

  std::string name;
  std::string segment;  // the Manager segment's name, for pickling
  Kind item;
};

template <class T>
struct ListImpl final : ListBase {
  ListImpl(Manager& m, const std::string& n, Kind k) : ListBase(n, k), l(without_gil([&] { return m.list<T>(n); })) {}

  T of(py::handle h) const { return Conv<T>::from(h, item, "item"); }
  py::object py(const T& x) const { return Conv<T>::to(x, item); }

  py::object getitem(long long i) override { return py(without_gil([&] { return l.get(i); })); }
  void setitem(long long i, py::handle h) override {
    T v = of(h);
    without_gil([&] { l.set(i, v); });
  }
  py::object pop(long long i) override { return py(without_gil([&] { return l.pop(i); })); }
  void append(py::handle h) override {
    T v = of(h);
    without_gil([&] { l.append(v); });
  }
  void extend(py::iterable values) override {
    std::vector<T> vs;
    for (py::handle h : values) vs.push_back(of(h));
    without_gil([&] { l.extend(vs); });
  }
  void insert(long long i, py::handle h) override {
    T v = of(h);
    without_gil([&] { l.insert(i, v); });
  }
  void remove(py::handle h) override {
    T v = of(h);
    without_gil([&] { l.remove(v); });
  }
  std::size_t index(py::handle h, std::size_t start) override {
    T v = of(h);
    return without_gil([&] { return l.index(v, start); });
  }
  std::size_t count(py::handle h) override {
    T v;
    try {
      v = of(h);
    } catch (const py::type_error&) {
      return 0;  // nothing of another type is in the list
    }
    return without_gil([&] { return l.count(v); });
  }
  std::size_t len() override { return without_gil([&] { return l.size(); }); }
  void clear() override { without_gil([&] { l.clear(); }); }
  py::list tolist() override {
    auto vs = without_gil([&] { return l.to_vector(); });
    py::list out(vs.size());
    for (std::size_t i = 0; i < vs.size(); ++i) out[i] = py(vs[i]);
    return out;
  }
  std::string check() override { return without_gil([&] { return l.check(); }); }

  List<T> l;
};

std::unique_ptr<ListBase> open_list(Manager& m, const std::string& name, Kind k) {
  return with_type(k, [&]<class T>() -> std::unique_ptr<ListBase> { return std::make_unique<ListImpl<T>>(m, name, k); });
}

[[noreturn]] void no_slices(const char* what) {
  throw py::type_error(std::string("mpp.List does not support slice ") + what +
                       " (it would not be one atomic step); use tolist() for a copy, clear(), extend()");
}

}  // namespace

void bind_list(py::module_& m, py::class_<Manager>& manager) {
  py::class_<ListBase>(m, "List", R"(A list in shared memory (collections.abc.MutableSequence).

Indexes are Python's (negative from the end; IndexError outside). Every method is one atomic
step under the list's lock; iteration and l[a:b] work on a consistent snapshot.)")
      .def("__getitem__", &ListBase::getitem)
      .def("__getitem__", [](ListBase& l, py::slice s) { return l.tolist().attr("__getitem__")(s); })
      .def("__setitem__", &ListBase::setitem)
      .def("__setitem__", [](ListBase&, py::slice, py::handle) { no_slices("assignment"); })
      .def("__delitem__", [](ListBase& l, long long i) { l.pop(i); })
      .def("__delitem__", [](ListBase&, py::slice) { no_slices("deletion"); })
      .def("__len__", &ListBase::len)
      .def("__iter__", [](ListBase& l) { return py::iter(l.tolist()); })
      .def("__reversed__", [](ListBase& l) {
        py::list v = l.tolist();
        v.attr("reverse")();
        return py::iter(v);
      })
      .def("__contains__", [](ListBase& l, py::handle v) { return l.count(v) > 0; })
      .def("__iadd__", [](py::object self, py::iterable values) {
        self.cast<ListBase&>().extend(values);
        return self;
      })
      .def("append", &ListBase::append)
      .def("extend", &ListBase::extend, "Appends every value, all or (when the segment is full) none.")
      .def("insert", &ListBase::insert, py::arg("index"), py::arg("value"))
      .def("pop", &ListBase::pop, py::arg("index") = -1)
      .def("remove", &ListBase::remove)
      .def("index", [](ListBase& l, py::handle v, long long start, std::optional<long long> stop) {
             const long long n = static_cast<long long>(l.len());
             if (start < 0) start = std::max(0LL, start + n);
             std::size_t i = l.index(v, static_cast<std::size_t>(start));
             if (stop) {
               long long s = *stop < 0 ? *stop + n : *stop;
               if (static_cast<long long>(i) >= s) throw py::value_error("List.index(x): x not in list");
             }
             return i;
           },
           py::arg("value"), py::arg("start") = 0, py::arg("stop") = py::none())
      .def("count", &ListBase::count)
      .def("clear", &ListBase::clear)
      .def("tolist", &ListBase::tolist, "A list copy of the items (a consistent snapshot).")
      .def("check", &ListBase::check, "What is wrong with the list's structure ('' when sound).")
      .def_property_readonly("name", [](ListBase& l) { return l.name; })
      .def_property_readonly("segment", [](ListBase& l) { return l.segment; })
      .def_property_readonly("item_type", [](ListBase& l) { return kind_type(l.item); });

  manager.def(
      "list", [](Manager& mg, const std::string& name, py::handle item) {
        auto l = open_list(mg, name, kind_of(item, "item"));
        l->segment = mg.name();
        return l;
      },
      py::arg("name"), py::arg("item") = kind_type(Kind::object),
      R"(The shared list `name`, made empty if new. item: int, float, str, bytes, bool or object
(pickled, Python only). TypeError (mpp.TypeMismatch) if `name` exists with another type.)");
}

}  // namespace mpp::python
