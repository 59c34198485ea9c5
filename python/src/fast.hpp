// Direct CPython entry points for the hottest methods (dict subscripts, queue put/get).
//
// pybind11's generic dispatcher costs about 1,400 instructions a call (an argument vector,
// overload resolution, keyword defaults, a type-caster lookup for self), more than the
// shared-memory operation itself (callgrind: a 64 B put + get pair was ~6,600 instructions,
// ~2,700 of them dispatch; ~3,100 with these entry points). For these few methods the module
// installs its own fastcall methods and type slots, written by hand because pybind11 offers
// no cheaper path; they call the same C++ members the pybind11 bindings do and raise
// through the same exception translators.
#pragma once

#include <initializer_list>

#include "module.hpp"

namespace mpp::python::fast {

// The C++ object of a pybind11 instance of a class bound with a single, non-virtual chain
// of bases (the object's pointer is its bases' pointer). The descriptor or slot that calls
// this has already checked that self is an instance of the class.
template <class T>
T& self_of(PyObject* self) {
  auto* inst = reinterpret_cast<py::detail::instance*>(self);
  return *static_cast<T*>(inst->get_value_and_holder().value_ptr());
}

// Sets the Python error for the C++ exception being handled, as pybind11 would.
inline void set_python_error() {
  if (py::detail::apply_exception_translators(py::detail::get_local_internals().registered_exception_translators)) return;
  if (py::detail::apply_exception_translators(py::detail::get_internals().registered_exception_translators)) return;
  PyErr_SetString(PyExc_SystemError, "mpp: an unknown C++ exception escaped");
}

// Runs fn() -> py::object, returning a new reference, or nullptr with the error set.
template <class F>
PyObject* guarded(F&& fn) noexcept {
  try {
    return fn().release().ptr();
  } catch (...) {
    set_python_error();
    return nullptr;
  }
}

// Fastcall arguments by position or keyword into `out` (absent ones stay null). Throws
// TypeError for unknown, repeated or too many arguments, naming `fn`.
inline void parse(const char* fn, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                  std::initializer_list<const char*> names, PyObject** out) {
  const auto n = static_cast<Py_ssize_t>(names.size());
  if (nargs > n) {
    throw py::type_error(std::string(fn) + "() takes at most " + std::to_string(n) + " arguments (" +
                         std::to_string(nargs) + " given)");
  }
  for (Py_ssize_t i = 0; i < n; ++i) out[i] = i < nargs ? args[i] : nullptr;
  const Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t k = 0; k < nk; ++k) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, k);
    Py_ssize_t i = 0;
    for (const char* name : names) {
      if (PyUnicode_CompareWithASCIIString(key, name) == 0) break;
      ++i;
    }
    if (i == n) {
      throw py::type_error(std::string(fn) + "() got an unexpected keyword argument '" + py::str(key).cast<std::string>() + "'");
    }
    if (out[i] != nullptr) throw py::type_error(std::string(fn) + "() got multiple values for argument '" + names.begin()[i] + "'");
    out[i] = args[nargs + k];
  }
}

// Installs `def` (static storage) as the method def->ml_name of the class `cls`.
inline void install(py::handle cls, PyMethodDef* def) {
  py::object descr = py::reinterpret_steal<py::object>(PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), def));
  if (!descr) throw py::error_already_set();
  py::setattr(cls, def->ml_name, descr);
}

}  // namespace mpp::python::fast
