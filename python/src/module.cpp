// The `mpp` Python module (its compiled part, mpp._mpp): the Manager, the type mapping and
// the translation of mpp's exceptions to Python's. The objects are bound in dict.cpp,
// list.cpp, queue.cpp, sync.cpp and value.cpp.
#include "module.hpp"

#include <pybind11/stl.h>

#include <queue>
#include <string>

namespace mpp::python {

Kind kind_of(py::handle type, const char* role, bool allow_object) {
  auto* t = type.ptr();
  if (t == reinterpret_cast<PyObject*>(&PyBool_Type)) return Kind::bool_;
  if (t == reinterpret_cast<PyObject*>(&PyLong_Type)) return Kind::int_;
  if (t == reinterpret_cast<PyObject*>(&PyFloat_Type)) return Kind::float_;
  if (t == reinterpret_cast<PyObject*>(&PyUnicode_Type)) return Kind::str;
  if (t == reinterpret_cast<PyObject*>(&PyBytes_Type)) return Kind::bytes;
  if (t == reinterpret_cast<PyObject*>(&PyBaseObject_Type)) {
    if (allow_object) return Kind::object;
    throw py::type_error(std::string(role) +
                         "=object is not supported: pickles of equal keys can differ, so "
                         "keys must be int, float, str, bytes or bool");
  }
  throw py::type_error(std::string(role) + " must be one of the types int, float, str, bytes, bool" +
                       (allow_object ? ", object" : "") + "; got " + std::string(py::repr(type)));
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::int_: return "int";
    case Kind::float_: return "float";
    case Kind::str: return "str";
    case Kind::bytes: return "bytes";
    case Kind::bool_: return "bool";
    case Kind::object: return "object";
  }
  return "?";
}

py::object kind_type(Kind k) {
  switch (k) {
    case Kind::int_: return py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(&PyLong_Type));
    case Kind::float_: return py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(&PyFloat_Type));
    case Kind::str: return py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(&PyUnicode_Type));
    case Kind::bytes: return py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(&PyBytes_Type));
    case Kind::bool_: return py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(&PyBool_Type));
    case Kind::object: return py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(&PyBaseObject_Type));
  }
  return py::none();
}

void wrong_type(py::handle h, Kind expected, const char* role) {
  throw py::type_error(std::string(role) + " must be " + kind_name(expected) + ", not " +
                       Py_TYPE(h.ptr())->tp_name);
}

std::int64_t Conv<std::int64_t>::from(py::handle h, Kind, const char* role) {
  if (!PyLong_Check(h.ptr())) wrong_type(h, Kind::int_, role);
  int overflow = 0;
  long long v = PyLong_AsLongLongAndOverflow(h.ptr(), &overflow);
  if (overflow != 0) {
    throw py::value_error(std::string(role) + " " + std::string(py::str(h)) +
                          " does not fit in 64 bits (an int is stored as a C++ std::int64_t)");
  }
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

double Conv<double>::from(py::handle h, Kind, const char* role) {
  if (!PyFloat_Check(h.ptr()) && !PyLong_Check(h.ptr())) wrong_type(h, Kind::float_, role);
  double v = PyFloat_AsDouble(h.ptr());
  if (v == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

bool Conv<bool>::from(py::handle h, Kind, const char* role) {
  if (!PyBool_Check(h.ptr())) wrong_type(h, Kind::bool_, role);
  return h.ptr() == Py_True;
}

std::string Conv<std::string>::from(py::handle h, Kind k, const char* role) {
  if (k == Kind::str) {
    if (!PyUnicode_Check(h.ptr())) wrong_type(h, k, role);
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(h.ptr(), &n);
    if (s == nullptr) throw py::error_already_set();
    return std::string(s, static_cast<std::size_t>(n));
  }
  if (PyBytes_Check(h.ptr())) {
    return std::string(PyBytes_AS_STRING(h.ptr()), static_cast<std::size_t>(PyBytes_GET_SIZE(h.ptr())));
  }
  if (PyByteArray_Check(h.ptr())) {
    return std::string(PyByteArray_AS_STRING(h.ptr()), static_cast<std::size_t>(PyByteArray_GET_SIZE(h.ptr())));
  }
  wrong_type(h, k, role);
}

py::object Conv<std::string>::to(std::string_view v, Kind k) {
  PyObject* o = k == Kind::str
                    ? PyUnicode_DecodeUTF8(v.data(), static_cast<Py_ssize_t>(v.size()), "strict")
                    : PyBytes_FromStringAndSize(v.data(), static_cast<Py_ssize_t>(v.size()));
  if (o == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(o);
}

namespace {
// pickle.dumps / pickle.loads, looked up once (the module lives as long as the interpreter).
PyObject* pickle_function(const char* name) {
  static PyObject* pickle = PyImport_ImportModule("pickle");
  if (pickle == nullptr) throw py::error_already_set();
  PyObject* f = PyObject_GetAttrString(pickle, name);
  if (f == nullptr) throw py::error_already_set();
  return f;
}
}  // namespace

Pickled Conv<Pickled>::from(py::handle h, Kind, const char*) {
  static PyObject* dumps = pickle_function("dumps");
  static PyObject* protocol = PyLong_FromLong(5);  // pickle.HIGHEST_PROTOCOL of 3.8+
  py::object b = py::reinterpret_steal<py::object>(PyObject_CallFunctionObjArgs(dumps, h.ptr(), protocol, nullptr));
  if (!b) throw py::error_already_set();
  return Pickled(std::string(PyBytes_AS_STRING(b.ptr()), static_cast<std::size_t>(PyBytes_GET_SIZE(b.ptr()))));
}

py::object Conv<Pickled>::to(std::string_view v, Kind) {
  static PyObject* loads = pickle_function("loads");
  py::object mv = py::reinterpret_steal<py::object>(
      PyMemoryView_FromMemory(const_cast<char*>(v.data()), static_cast<Py_ssize_t>(v.size()), PyBUF_READ));
  if (!mv) throw py::error_already_set();
  py::object o = py::reinterpret_steal<py::object>(PyObject_CallOneArg(loads, mv.ptr()));
  if (!o) throw py::error_already_set();
  return o;
}

std::optional<std::chrono::nanoseconds> parse_timeout(const py::object& timeout) {
  if (timeout.is_none()) return std::nullopt;
  const double s = timeout.cast<double>();
  if (s < 0) throw py::value_error("'timeout' must be a non-negative number");
  if (s > 1e9) return std::nullopt;  // beyond any wait worth bounding: forever
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
}

void bind_errors(py::module_& m) {
  // mpp's own exceptions that have no exact Python counterpart subclass the nearest builtin,
  // so `except TypeError` catches a type mismatch and `except MemoryError` a full segment.
  static py::exception<mpp::TypeMismatch> type_mismatch(m, "TypeMismatch", PyExc_TypeError);
  static py::exception<mpp::SegmentFull> segment_full(m, "SegmentFull", PyExc_MemoryError);
  static py::exception<mpp::SegmentError> segment_error(m, "SegmentError", PyExc_OSError);
  static py::exception<mpp::DecodeError> decode_error(m, "DecodeError", PyExc_ValueError);
  static py::object queue_empty = py::module_::import("queue").attr("Empty");
  static py::object queue_full = py::module_::import("queue").attr("Full");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const mpp::TypeMismatch& e) {
      type_mismatch(e.what());
    } catch (const mpp::SegmentFull& e) {
      segment_full(e.what());
    } catch (const mpp::SegmentError& e) {
      segment_error(e.what());
    } catch (const mpp::DecodeError& e) {
      decode_error(e.what());
    } catch (const mpp::Empty& e) {
      PyErr_SetNone(queue_empty.ptr());
    } catch (const mpp::Full& e) {
      PyErr_SetNone(queue_full.ptr());
    } catch (const mpp::KeyError& e) {
      PyErr_SetString(PyExc_KeyError, e.what());
    } catch (const mpp::IndexError& e) {
      PyErr_SetString(PyExc_IndexError, e.what());
    } catch (const mpp::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const mpp::TimeoutError& e) {
      PyErr_SetString(PyExc_TimeoutError, e.what());
    } catch (const mpp::BrokenBarrierError& e) {
      PyErr_SetString(py::module_::import("threading").attr("BrokenBarrierError").ptr(), e.what());
    } catch (const mpp::FileNotFoundError& e) {
      PyErr_SetObject(PyExc_FileNotFoundError, py::make_tuple(e.error_number(), e.what()).ptr());
    } catch (const mpp::FileExistsError& e) {
      PyErr_SetObject(PyExc_FileExistsError, py::make_tuple(e.error_number(), e.what()).ptr());
    } catch (const mpp::PermissionError& e) {
      PyErr_SetObject(PyExc_PermissionError, py::make_tuple(e.error_number(), e.what()).ptr());
    } catch (const mpp::OSError& e) {
      PyErr_SetObject(PyExc_OSError, py::make_tuple(e.error_number(), e.what()).ptr());
    } catch (const mpp::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
}

}  // namespace mpp::python

namespace py = pybind11;
using mpp::python::without_gil;

PYBIND11_MODULE(_mpp, m) {
  m.doc() = "mpp's shared-memory Manager for Python: dicts, lists, queues, values and locks "
            "in a segment that C++ and Python processes share (see help(mpp)).";
  mpp::python::bind_errors(m);

  py::class_<mpp::Manager> manager(m, "Manager", R"(A shared-memory segment holding named objects.

Manager() makes a segment with a fresh unique name, removed when this process releases its
last handle, shared with children forked afterwards (os.fork, multiprocessing's fork start
method). Manager(name, size=...) makes /dev/shm/<name> of `size` bytes (FileExistsError if it
exists); Manager.attach(name) opens an existing one from any process, C++ or Python.)");
  manager
      .def(py::init([](std::optional<std::string> name, std::size_t size) {
             if (!name) return without_gil([&] { return mpp::Manager(size); });
             return without_gil([&] { return mpp::Manager(*name, size); });
           }),
           py::arg("name") = py::none(), py::arg("size") = std::size_t{mpp::Manager::default_bytes})
      .def_static("attach", [](const std::string& name) { return without_gil([&] { return mpp::Manager::attach(name); }); },
                  py::arg("name"), "Opens the existing segment `name` (FileNotFoundError if there is none).")
      .def_property_readonly("name", &mpp::Manager::name)
      .def_property_readonly("size", &mpp::Manager::size)
      .def_property_readonly("free_bytes", &mpp::Manager::free_bytes)
      .def_property_readonly("is_creator", &mpp::Manager::is_creator)
      .def("persist", &mpp::Manager::persist,
           "Keeps the segment in /dev/shm after this process is done with it.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](py::object, py::args) { return false; })
      .def("__repr__", [](const mpp::Manager& mg) {
        return "mpp.Manager(" + std::string(py::repr(py::str(mg.name()))) + ", size=" + std::to_string(mg.size()) + ")";
      });
  m.attr("DEFAULT_SIZE") = std::size_t{mpp::Manager::default_bytes};

  mpp::python::bind_sync(m, manager);
  mpp::python::bind_value(m, manager);
  mpp::python::bind_dict(m, manager);
  mpp::python::bind_list(m, manager);
  mpp::python::bind_queue(m, manager);
}
