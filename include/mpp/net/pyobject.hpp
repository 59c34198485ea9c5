// mpp::net::PyObject: the values that cross the wire between mpp and Python's
// multiprocessing.managers — the safe subset of what a Python peer can pickle.
//
//   Python            PyObject alternative        C++ conversions (to_py / from_py<T>)
//   None              None (std::monostate)       std::monostate, std::nullopt
//   bool              bool                        bool
//   int               std::int64_t, or BigInt     all integral types (range-checked)
//   float             double                      float, double
//   str               std::string (UTF-8)         std::string, const char*, std::string_view
//   bytes             Bytes                       Bytes
//   bytearray         ByteArray
//   tuple             Tuple                       std::tuple<...>, std::pair<...>
//   list              List                        std::vector<T>
//   dict              Dict (ordered pairs)        std::map<K, V>, std::unordered_map<K, V>
//   set, frozenset    Set
//   an exception      ExceptionValue              (inert data: module, name, args)
//   manager Token     Token
//   slice             Slice (int or None bounds)
//
// Any other C++ type travels as Bytes holding the one codec's encoding of it
// (detail/codec.hpp), so C++ peers exchange user types and Python peers see bytes.
// Nothing here is ever looked up, imported or called: an ExceptionValue or a Token is data.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "mpp/detail/codec.hpp"
#include "mpp/detail/type_name.hpp"
#include "mpp/errors.hpp"

namespace mpp::net {

class PyObject;

// Python None.
using None = std::monostate;

// Python bytes (distinct from str, which is std::string).
struct Bytes {
  std::string data;  // the bytes, any values
  friend bool operator==(const Bytes&, const Bytes&) = default;
};

// Python bytearray.
struct ByteArray {
  std::string data;  // the bytes, any values
  friend bool operator==(const ByteArray&, const ByteArray&) = default;
};

// A Python int outside std::int64_t: its minimal little-endian two's complement bytes,
// as pickle's LONG1/LONG4 carry them. Never holds a value that fits in std::int64_t.
struct BigInt {
  std::string le_bytes;  // least significant byte first; the last byte's top bit is the sign
  friend bool operator==(const BigInt&, const BigInt&) = default;
};

// A Python tuple: requests, replies and a call's arguments travel as tuples.
struct Tuple {
  std::vector<PyObject> items;  // in order
  friend bool operator==(const Tuple&, const Tuple&);
};

// A Python list (also what a dict view, d.keys(), decodes to).
struct List {
  std::vector<PyObject> items;  // in order
  friend bool operator==(const List&, const List&);
};

// A dict as its (key, value) pairs in insertion order; keys can be any hashable value.
struct Dict {
  std::vector<std::pair<PyObject, PyObject>> items;  // (key, value), in insertion order
  // The value for `key`, or nullptr.
  const PyObject* find(const PyObject& key) const;
  friend bool operator==(const Dict&, const Dict&);
};

// A set or frozenset, in the order the peer sent it.
struct Set {
  std::vector<PyObject> items;  // as the peer sent them
  bool frozen = false;          // a frozenset
  friend bool operator==(const Set&, const Set&);
};

// An exception instance as data: `module.name(*args)` (e.g. queue.Empty(), builtins.KeyError('k')).
// `state` holds the instance __dict__ when the peer sent one (a Dict), else None.
struct ExceptionValue {
  std::string module;                                // "builtins", "queue"
  std::string name;                                  // the class name, "KeyError"
  std::vector<PyObject> args;                        // the instance's args
  std::vector<std::pair<PyObject, PyObject>> state;  // its __dict__ items, or empty
  friend bool operator==(const ExceptionValue&, const ExceptionValue&);
};

// multiprocessing.managers.Token(typeid, address, id). The address is (host, port) for TCP;
// for an AF_UNIX manager `port` is -1 and `host` holds the socket path.
struct Token {
  std::string typeid_;     // the registered type's name ("Queue")
  std::string host;        // the manager's host, or an AF_UNIX socket path
  std::int64_t port = -1;  // the manager's port; -1 for AF_UNIX
  std::string id;          // the served object's id string (a request's ident)
  friend bool operator==(const Token&, const Token&) = default;
};

// A slice (what a Python proxy's l[1:3] sends as the index): each bound an int or None.
struct Slice {
  // The bounds as sent: nullopt for None, as in Python's slice(start, stop, step).
  std::optional<std::int64_t> start, stop, step;
  friend bool operator==(const Slice&, const Slice&) = default;
  // The positions it selects in a sequence of `length` items, as Python's slice.indices()
  // and range() give them. Throws mpp::ValueError for a step of 0.
  std::vector<std::size_t> indices(std::size_t length) const;
};

// One Python value of the safe subset. Copyable, comparable with ==, printable with repr().
class PyObject {
 public:
  // The alternatives, one per Python type of the subset (see the top of this file).
  using Variant = std::variant<None, bool, std::int64_t, BigInt, double, std::string, Bytes,
                               ByteArray, Tuple, List, Dict, Set, ExceptionValue, Token, Slice>;

  // None (also from std::nullopt, so an empty optional converts to None).
  PyObject() = default;
  PyObject(None) {}
  PyObject(std::nullopt_t) {}
  // A bool, never an int.
  PyObject(bool b) : v_(b) {}
  // An int: std::int64_t, or a BigInt for an unsigned value above INT64_MAX. (char is not an
  // integer here: a character is text.)
  template <class I>
  requires(std::is_integral_v<I> && !std::is_same_v<I, bool> && !std::is_same_v<I, char>)
      PyObject(I i);
  // A float.
  PyObject(double d) : v_(d) {}
  // A str, holding a copy of the characters; they should be UTF-8 (neither this nor the
  // encoder checks, and a Python peer cannot unpickle a str that is not).
  PyObject(const char* s) : v_(std::string(s)) {}
  PyObject(std::string_view s) : v_(std::string(s)) {}
  PyObject(std::string s) : v_(std::move(s)) {}
  PyObject(BigInt b) : v_(std::move(b)) {}
  PyObject(Bytes b) : v_(std::move(b)) {}
  PyObject(ByteArray b) : v_(std::move(b)) {}
  PyObject(Tuple t) : v_(std::move(t)) {}
  PyObject(List l) : v_(std::move(l)) {}
  PyObject(Dict d) : v_(std::move(d)) {}
  PyObject(Set s) : v_(std::move(s)) {}
  PyObject(ExceptionValue e) : v_(std::move(e)) {}
  PyObject(Token t) : v_(std::move(t)) {}
  PyObject(Slice s) : v_(std::move(s)) {}

  // The value as the std::variant it is, for std::visit.
  const Variant& variant() const noexcept { return v_; }
  Variant& variant() noexcept { return v_; }

  // Whether it holds the alternative T (None, bool, std::int64_t, std::string, Tuple, ...).
  template <class T>
  bool is() const noexcept {
    return std::holds_alternative<T>(v_);
  }
  // The alternative T. Throws mpp::TypeMismatch naming both types when it holds another.
  template <class T>
  const T& get() const;
  template <class T>
  T& get();

  // Python's type name of the held value ("int", "str", "tuple", "Empty"...).
  std::string type_name() const;

  friend bool operator==(const PyObject& a, const PyObject& b) { return a.v_ == b.v_; }
  // A total order (by alternative, then value), so PyObjects can key a std::map.
  friend bool operator<(const PyObject& a, const PyObject& b);

 private:
  Variant v_;
};

// Python's repr() of `v`, e.g. "('#RETURN', None)", "Empty()", "b'\\x00'".
std::string repr(const PyObject& v);

// Python's == between values, where operator== is exact (same alternative, same value, which
// the codec's round-trip checks need): numbers compare by value across bool, int and float
// (1 == 1.0 == True, 0.0 == -0.0), sets and dicts regardless of order, containers element by
// element. An int beyond std::int64_t equals no float (a known gap: Python's 2.0**70 == 2**70).
bool py_equal(const PyObject& a, const PyObject& b);

// The canonical form of `key` for dict lookups: two keys are the same Python dict key exactly
// when their dict_keys are == (True and 1.0 become the int 1; tuples, frozensets recursively).
PyObject dict_key(const PyObject& key);

// Builds a Tuple from C++ values: py_tuple("put", 1, None{}).
template <class... A>
PyObject py_tuple(A&&... a);

// ----- conversions between C++ values and PyObject ------------------------------------

// The PyObject for a C++ value, by the table at the top of this file: integers (BigInt above
// INT64_MAX), floats, bool, strings, std::optional (None when empty), std::vector (a list),
// maps (a dict), std::tuple/pair (a tuple); a PyObject or an alternative is kept as it is;
// any other type becomes Bytes holding the codec's encoding, and throws what its encoding
// throws.
template <class T>
PyObject to_py(const T& value);

// The C++ value held in `v`. Throws mpp::TypeMismatch when `v` cannot be a T (wrong type,
// an int out of T's range) and DecodeError when codec bytes are not a T.
template <class T>
T from_py(const PyObject& v);

// ===== implementation ===================================================================

namespace detail {
[[noreturn]] void throw_mismatch(const std::string& wanted, const PyObject& got);
[[noreturn]] void throw_int_range(const std::string& wanted, const PyObject& got);

// std::vector<bool> is left to the codec: its proxy references do not convert.
template <class T>
struct IsVector : std::false_type {};
template <class T, class A>
struct IsVector<std::vector<T, A>> : std::bool_constant<!std::is_same_v<T, bool>> {};
template <class T>
struct IsMap : std::false_type {};
template <class K, class V, class C, class A>
struct IsMap<std::map<K, V, C, A>> : std::true_type {};
template <class K, class V, class H, class E, class A>
struct IsMap<std::unordered_map<K, V, H, E, A>> : std::true_type {};
template <class T>
struct IsTupleLike : std::false_type {};
template <class... A>
struct IsTupleLike<std::tuple<A...>> : std::true_type {};
template <class A, class B>
struct IsTupleLike<std::pair<A, B>> : std::true_type {};
template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};

template <class T>
inline constexpr bool is_alternative =
    std::is_same_v<T, None> || std::is_same_v<T, BigInt> || std::is_same_v<T, Bytes> ||
    std::is_same_v<T, ByteArray> || std::is_same_v<T, Tuple> || std::is_same_v<T, List> ||
    std::is_same_v<T, Dict> || std::is_same_v<T, Set> || std::is_same_v<T, ExceptionValue> ||
    std::is_same_v<T, Token>;
}  // namespace detail

template <class I>
requires(std::is_integral_v<I> && !std::is_same_v<I, bool> &&
         !std::is_same_v<I, char>) PyObject::PyObject(I i) {
  if constexpr (std::is_unsigned_v<I> && sizeof(I) >= sizeof(std::int64_t)) {
    if (i > static_cast<std::uint64_t>(INT64_MAX)) {
      std::string le;
      for (std::uint64_t u = i; u != 0; u >>= 8) le.push_back(static_cast<char>(u & 0xff));
      le.push_back('\0');  // positive: the sign byte
      v_ = BigInt{std::move(le)};
      return;
    }
  }
  v_ = static_cast<std::int64_t>(i);
}

template <class T>
const T& PyObject::get() const {
  if (auto* p = std::get_if<T>(&v_)) return *p;
  detail::throw_mismatch(mpp::detail::type_name<T>(), *this);
}
template <class T>
T& PyObject::get() {
  if (auto* p = std::get_if<T>(&v_)) return *p;
  detail::throw_mismatch(mpp::detail::type_name<T>(), *this);
}

template <class T>
PyObject to_py(const T& value) {
  using D = std::decay_t<T>;
  if constexpr (std::is_same_v<D, PyObject>) {
    return value;
  } else if constexpr (std::is_same_v<D, bool> || std::is_same_v<D, std::string> ||
                       std::is_same_v<D, std::string_view> || std::is_same_v<D, const char*> ||
                       std::is_same_v<D, char*> || detail::is_alternative<D> ||
                       std::is_same_v<D, std::nullopt_t>) {
    return PyObject(value);
  } else if constexpr (std::is_integral_v<D> && !std::is_same_v<D, char>) {
    return PyObject(value);
  } else if constexpr (std::is_floating_point_v<D>) {
    return PyObject(static_cast<double>(value));
  } else if constexpr (detail::IsOptional<D>::value) {
    return value ? to_py(*value) : PyObject();
  } else if constexpr (detail::IsVector<D>::value) {
    List l;
    l.items.reserve(value.size());
    for (const auto& x : value) l.items.push_back(to_py(x));
    return l;
  } else if constexpr (detail::IsMap<D>::value) {
    Dict d;
    d.items.reserve(value.size());
    for (const auto& [k, x] : value) d.items.emplace_back(to_py(k), to_py(x));
    return d;
  } else if constexpr (detail::IsTupleLike<D>::value) {
    Tuple t;
    std::apply([&](const auto&... x) { (t.items.push_back(to_py(x)), ...); }, value);
    return t;
  } else {
    auto enc = mpp::detail::encode(value);
    return Bytes{std::string(mpp::detail::as_chars(enc.bytes()))};
  }
}

template <class T>
T from_py(const PyObject& v) {
  using D = std::decay_t<T>;
  if constexpr (std::is_same_v<D, PyObject>) {
    return v;
  } else if constexpr (std::is_same_v<D, bool>) {
    if (v.is<bool>()) return v.get<bool>();
    if (v.is<std::int64_t>()) return v.get<std::int64_t>() != 0;
    detail::throw_mismatch("bool", v);
  } else if constexpr (std::is_integral_v<D> && !std::is_same_v<D, char>) {
    std::int64_t i;
    if (v.is<std::int64_t>()) {
      i = v.get<std::int64_t>();
    } else if (v.is<bool>()) {
      i = v.get<bool>() ? 1 : 0;
    } else if (v.is<BigInt>()) {
      detail::throw_int_range(mpp::detail::type_name<D>(), v);
    } else {
      detail::throw_mismatch(mpp::detail::type_name<D>(), v);
    }
    if constexpr (std::is_signed_v<D>) {
      if (i < std::numeric_limits<D>::min() || i > std::numeric_limits<D>::max())
        detail::throw_int_range(mpp::detail::type_name<D>(), v);
    } else {
      if (i < 0 || static_cast<std::uint64_t>(i) > std::numeric_limits<D>::max())
        detail::throw_int_range(mpp::detail::type_name<D>(), v);
    }
    return static_cast<D>(i);
  } else if constexpr (std::is_floating_point_v<D>) {
    if (v.is<double>()) return static_cast<D>(v.get<double>());
    if (v.is<std::int64_t>()) return static_cast<D>(v.get<std::int64_t>());
    detail::throw_mismatch(mpp::detail::type_name<D>(), v);
  } else if constexpr (std::is_same_v<D, std::string>) {
    return v.get<std::string>();
  } else if constexpr (detail::is_alternative<D>) {
    return v.get<D>();
  } else if constexpr (detail::IsOptional<D>::value) {
    if (v.is<None>()) return std::nullopt;
    return from_py<typename D::value_type>(v);
  } else if constexpr (detail::IsVector<D>::value) {
    const std::vector<PyObject>* items = nullptr;
    if (v.is<List>())
      items = &v.get<List>().items;
    else if (v.is<Tuple>())
      items = &v.get<Tuple>().items;
    else
      detail::throw_mismatch(mpp::detail::type_name<D>(), v);
    D out;
    out.reserve(items->size());
    for (const auto& x : *items) out.push_back(from_py<typename D::value_type>(x));
    return out;
  } else if constexpr (detail::IsMap<D>::value) {
    D out;
    for (const auto& [k, x] : v.get<Dict>().items)
      out.emplace(from_py<typename D::key_type>(k), from_py<typename D::mapped_type>(x));
    return out;
  } else if constexpr (detail::IsTupleLike<D>::value) {
    const std::vector<PyObject>* items = nullptr;
    if (v.is<Tuple>())
      items = &v.get<Tuple>().items;
    else if (v.is<List>())
      items = &v.get<List>().items;
    else
      detail::throw_mismatch(mpp::detail::type_name<D>(), v);
    if (items->size() != std::tuple_size_v<D>)
      detail::throw_mismatch(mpp::detail::type_name<D>(), v);
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return D(from_py<std::tuple_element_t<I, D>>((*items)[I])...);
    }
    (std::make_index_sequence<std::tuple_size_v<D>>());
  } else {
    if (!v.is<Bytes>())
      detail::throw_mismatch(mpp::detail::type_name<D>() + " (as codec bytes)", v);
    return mpp::detail::decode<D>(mpp::detail::as_bytes(v.get<Bytes>().data));
  }
}

template <class... A>
PyObject py_tuple(A&&... a) {
  Tuple t;
  t.items.reserve(sizeof...(A));
  (t.items.push_back(to_py(a)), ...);
  return t;
}

}  // namespace mpp::net
