// mpp.Value: a Manager's Value<T> (int, float or bool: a Value holds raw bytes), with
// Python's `.value` and get_lock().
#include "module.hpp"

namespace mpp::python {
namespace {

struct ValueBase {
  explicit ValueBase(Kind k) : kind(k) {}
  virtual ~ValueBase() = default;
  virtual py::object get() = 0;
  virtual void set(py::handle v) = 0;
  virtual RLock get_lock() = 0;
  Kind kind;
  std::string name;
  std::string segment;  // the Manager segment's name, for pickling
};

template <class T>
struct ValueImpl final : ValueBase {
  ValueImpl(Value<T> v, Kind k) : ValueBase(k), v(std::move(v)) {}
  py::object get() override { return Conv<T>::to(without_gil([&] { return v.value(); }), kind); }
  void set(py::handle h) override {
    T x = Conv<T>::from(h, kind, "value");
    without_gil([&] { v.set_value(x); });
  }
  RLock get_lock() override { return v.get_lock(); }
  Value<T> v;
};

}  // namespace

void bind_value(py::module_& m, py::class_<Manager>& manager) {
  py::class_<ValueBase>(m, "Value", R"(One int, float or bool in shared memory, with its RLock.

`v.value` reads and writes under the lock; `with v.get_lock(): v.value += 1` is atomic.)")
      .def_property("value", &ValueBase::get, &ValueBase::set)
      .def("get_lock", &ValueBase::get_lock)
      .def_property_readonly("type", [](ValueBase& v) { return kind_type(v.kind); })
      .def_property_readonly("name", [](ValueBase& v) { return v.name; })
      .def_property_readonly("segment", [](ValueBase& v) { return v.segment; });

  manager.def(
      "value",
      [](Manager& mg, const std::string& name, py::handle type, py::object init) -> std::unique_ptr<ValueBase> {
        Kind k = kind_of(type, "type");
        auto make = [&]<class T>() -> std::unique_ptr<ValueBase> {
          T x = init.is_none() ? T{} : Conv<T>::from(init, k, "init");
          auto p = std::make_unique<ValueImpl<T>>(without_gil([&] { return mg.value<T>(name, x); }), k);
          p->name = name;
          p->segment = mg.name();
          return p;
        };
        switch (k) {
          case Kind::int_: return make.template operator()<std::int64_t>();
          case Kind::float_: return make.template operator()<double>();
          case Kind::bool_: return make.template operator()<bool>();
          default:
            throw py::type_error(std::string("a Value holds int, float or bool, not ") + kind_name(k) +
                                 ": use a dict or a list for other types");
        }
      },
      py::arg("name"), py::arg("type"), py::arg("init") = py::none(),
      "The shared Value `name` of `type` (int, float or bool), holding `init` (0) if new.");
}

}  // namespace mpp::python
