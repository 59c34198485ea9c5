#include "mpp/repr.hpp"

#include "mpp/net/pyobject.hpp"

namespace mpp::detail {

// mpp::net already writes Python's reprs (for the values it exchanges with Python peers):
// one implementation of float and str repr for both.
std::string float_repr(double d) { return net::repr(net::PyObject(d)); }
std::string str_repr(std::string_view s) { return net::repr(net::PyObject(s)); }

}  // namespace mpp::detail
