// mpp::repr(x): Python's repr() of a value, and operator<< for mpp's shared objects.
//
//   std::cout << d;             // {'a': 1, 'b': 2}     (mpp::Dict<std::string, int>)
//   std::cout << l;             // [1.5, 2.0]           (mpp::List<double>)
//   std::string s = mpp::repr(v);  // "5"               (mpp::Value<int>: its value)
//
// Values are written as Python writes the same data: bool as True/False, integers in
// decimal, floating point as Python's float repr (shortest round trip: 2.0, 0.1, 1e+16),
// strings quoted and escaped as Python's str repr ('a', "it's", '\n'), sequences as lists
// [a, b], sets as {a, b} (set() when empty), maps as {k: v}, pair/tuple/std::array as
// tuples (a, b) and (a,), optional as None or its value, variant as its alternative, an
// enum as its number. A char is a one-character str. Any other type is "<TYPE object>", as
// Python writes an object without a __repr__.
//
// Dict, List, Array print their contents (a Dict is read under its lock, one consistent
// snapshot); Value prints its value. As with Python's print(), what is printed is a
// snapshot: other processes may change the object right after.
//
// No std::format (g++ 12 has none): operator<< is a template on the stream, so this header
// needs only <iosfwd>; the stream's header is the caller's.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include "mpp/detail/type_name.hpp"
#include "mpp/serialization.hpp"

namespace mpp {

template <class T>
class Array;  // (Dict, List, Value are declared by serialization.hpp)

namespace detail {

// Python's float repr and str repr (defined in the library, shared with mpp::net's repr).
std::string float_repr(double d);
std::string str_repr(std::string_view s);

template <class T>
concept SetLike = RangeLike<T> && requires { typename T::key_type; } && !MapLike<T>;

template <class T>
void repr_to(std::string& out, const T& v);

template <class Range>
void repr_items(std::string& out, const Range& r, char open, char close) {
  out += open;
  bool first = true;
  for (const auto& x : r) {
    if (!first) out += ", ";
    first = false;
    if constexpr (MapLike<Range>) {
      repr_to(out, x.first);
      out += ": ";
      repr_to(out, x.second);
    } else {
      repr_to(out, static_cast<const typename Range::value_type&>(x));
    }
  }
  out += close;
}

template <class T>
void repr_to(std::string& out, const T& v) {
  if constexpr (std::is_same_v<T, bool>) {
    out += v ? "True" : "False";
  } else if constexpr (std::is_same_v<T, char>) {
    out += str_repr(std::string_view(&v, 1));
  } else if constexpr (std::is_integral_v<T>) {
    out += std::to_string(v);
  } else if constexpr (std::is_enum_v<T>) {
    out += std::to_string(static_cast<std::underlying_type_t<T>>(v));
  } else if constexpr (std::is_floating_point_v<T>) {
    out += float_repr(static_cast<double>(v));
  } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    out += str_repr(std::string_view(v));
  } else if constexpr (std::is_same_v<T, std::nullopt_t>) {
    out += "None";
  } else if constexpr (is_optional<T>) {
    if (v) repr_to(out, *v);
    else out += "None";
  } else if constexpr (is_variant<T>) {
    std::visit([&](const auto& x) { repr_to(out, x); }, v);
  } else if constexpr (TupleLike<T>) {
    out += '(';
    std::apply(
        [&](const auto&... x) {
          std::size_t i = 0;
          ((out += (i++ ? ", " : ""), repr_to(out, x)), ...);
        },
        v);
    out += std::tuple_size_v<T> == 1 ? ",)" : ")";
  } else if constexpr (MapLike<T>) {
    repr_items(out, v, '{', '}');
  } else if constexpr (SetLike<T>) {
    if (v.size() == 0) out += "set()";
    else repr_items(out, v, '{', '}');
  } else if constexpr (RangeLike<T>) {
    repr_items(out, v, '[', ']');
  } else {
    out += "<" + type_name<T>() + " object>";
  }
}

}  // namespace detail

// Python's repr() of a plain value (see the rules above).
template <class T>
std::string repr(const T& value) {
  std::string out;
  detail::repr_to(out, value);
  return out;
}

// Python's repr of the dict's contents: {'a': 1, 'b': 2}, in the dict's order.
template <class K, class V>
std::string repr(const Dict<K, V>& d) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : d.items()) {
    if (!first) out += ", ";
    first = false;
    detail::repr_to(out, k);
    out += ": ";
    detail::repr_to(out, v);
  }
  return out + "}";
}

// Python's repr of the list's contents: [1, 2].
template <class T>
std::string repr(const List<T>& l) {
  return repr(l.to_vector());
}

// The repr of the array's contents, as a list: [1, 2, 3].
template <class T>
std::string repr(const Array<T>& a) {
  return repr(a.snapshot());
}

// The repr of the value it holds.
template <class T>
std::string repr(const Value<T>& v) {
  return repr(v.value());
}

// Writes repr(d), repr(l), repr(a) or repr(v) to `os` (a std::ostream, or anything that
// takes a std::string with <<), so `std::cout << d` prints what Python's print(d) would.
template <class Os, class K, class V>
Os& operator<<(Os& os, const Dict<K, V>& d) {
  os << repr(d);
  return os;
}
template <class Os, class T>
Os& operator<<(Os& os, const List<T>& l) {
  os << repr(l);
  return os;
}
template <class Os, class T>
Os& operator<<(Os& os, const Array<T>& a) {
  os << repr(a);
  return os;
}
template <class Os, class T>
Os& operator<<(Os& os, const Value<T>& v) {
  os << repr(v);
  return os;
}

}  // namespace mpp
