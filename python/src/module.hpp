// What the parts of the Python module share: the Python <-> C++ type mapping, the pickled
// value type, waiting that releases the GIL and stays interruptible, and the name of the
// kind of a Python type for messages.
//
// The type mapping (docs/design/python-module.md has the table): int <-> std::int64_t,
// float <-> double, str <-> std::string (UTF-8), bytes <-> std::string, bool <-> bool,
// object <-> Pickled (a pickle, Python only). A Python handle opens the C++ template
// instantiation of those types, so its objects are the C++ program's objects, with the
// same type fingerprints in the segment's directory.
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "mpp/detail/codec.hpp"

namespace mpp::python {

namespace py = pybind11;

// A value pickled by Python (value=object): its bytes, stored as a string is. A type of
// its own, so that its fingerprint in the segment ("mpp::python::Pickled") tells it from a
// str or bytes object: C++ code sees it only if it names this type.
struct Pickled : std::string {
  Pickled() = default;
  Pickled(std::string bytes) : std::string(std::move(bytes)) {}  // NOLINT: the codec converts
};

}  // namespace mpp::python

// Pickles are stored as their characters, as std::string is, not as a Boost archive of a
// string (which would cost an archive per value). Declared before any container uses it.
template <>
inline constexpr mpp::detail::Encoding mpp::detail::encoding_of<mpp::python::Pickled> =
    mpp::detail::Encoding::string;

#include "mpp/manager.hpp"

namespace mpp::python {

// The Python types a typed object can hold.
enum class Kind : std::uint8_t { int_, float_, str, bytes, bool_, object };

// The Kind of the Python type object `type` (int, float, str, bytes, bool, object). Throws
// TypeError naming `role` ("key", "value", "item") for any other, and for object when
// `allow_object` is false.
Kind kind_of(py::handle type, const char* role, bool allow_object = true);
// "int", "float", ...
const char* kind_name(Kind k);
// The Python type object of a kind.
py::object kind_type(Kind k);

// Python value <-> C++ value of type T, for the kinds that map to T.
template <class T>
struct Conv;

template <>
struct Conv<std::int64_t> {
  static std::int64_t from(py::handle h, Kind, const char* role);
  static py::object to(std::int64_t v, Kind) { return py::reinterpret_steal<py::object>(PyLong_FromLongLong(v)); }
};
template <>
struct Conv<double> {
  static double from(py::handle h, Kind, const char* role);
  static py::object to(double v, Kind) { return py::reinterpret_steal<py::object>(PyFloat_FromDouble(v)); }
};
template <>
struct Conv<bool> {
  static bool from(py::handle h, Kind, const char* role);
  static py::object to(bool v, Kind) { return py::bool_(v); }
};
template <>
struct Conv<std::string> {
  static std::string from(py::handle h, Kind k, const char* role);
  static py::object to(std::string_view v, Kind k);
};
template <>
struct Conv<Pickled> {
  static Pickled from(py::handle h, Kind, const char* role);
  static py::object to(std::string_view v, Kind);
};

// Raises the TypeError of a value of the wrong type.
[[noreturn]] void wrong_type(py::handle h, Kind expected, const char* role);

// Calls fn<T>() with T the C++ type of `k`.
template <class F>
decltype(auto) with_type(Kind k, F&& fn) {
  switch (k) {
    case Kind::int_: return fn.template operator()<std::int64_t>();
    case Kind::float_: return fn.template operator()<double>();
    case Kind::str:
    case Kind::bytes: return fn.template operator()<std::string>();
    case Kind::bool_: return fn.template operator()<bool>();
    case Kind::object: return fn.template operator()<Pickled>();
  }
  throw std::logic_error("unknown kind");
}

// How long one wait runs with the GIL released before this thread checks for signals
// (Ctrl-C): the latency of a KeyboardInterrupt in a blocking call.
inline constexpr std::chrono::milliseconds kSignalSlice{50};

// Python's timeout argument: None (forever) or seconds >= 0; ValueError when negative.
std::optional<std::chrono::nanoseconds> parse_timeout(const py::object& timeout);

// Waits the Python way: calls attempt(slice) with the GIL released, slice by slice, until it
// returns true (done) or `timeout` passes (returns false). Between slices it runs Python's
// signal handlers with the GIL held: a KeyboardInterrupt raised there propagates, and since
// each attempt either completed or did nothing, nothing is held or half done.
template <class Attempt>
bool wait_interruptibly(std::optional<std::chrono::nanoseconds> timeout, Attempt&& attempt) {
  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> deadline;
  if (timeout) deadline = Clock::now() + *timeout;
  for (;;) {
    std::chrono::nanoseconds slice = kSignalSlice;
    if (deadline) slice = std::max(std::chrono::nanoseconds{0}, std::min(slice, std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - Clock::now())));
    bool done;
    {
      py::gil_scoped_release nogil;
      done = attempt(slice);
    }
    if (done) return true;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (deadline && Clock::now() >= *deadline) return false;
  }
}

// Runs fn() with the GIL released (any call that may wait for a lock of the segment: a
// thread that holds the GIL must never wait for a process-shared lock, whose holder may be
// another thread of this process waiting for the GIL).
template <class F>
decltype(auto) without_gil(F&& fn) {
  py::gil_scoped_release nogil;
  return fn();
}

void bind_errors(py::module_& m);
void bind_sync(py::module_& m, py::class_<Manager>& manager);
void bind_value(py::module_& m, py::class_<Manager>& manager);
void bind_dict(py::module_& m, py::class_<Manager>& manager);
void bind_list(py::module_& m, py::class_<Manager>& manager);
void bind_queue(py::module_& m, py::class_<Manager>& manager);

}  // namespace mpp::python
