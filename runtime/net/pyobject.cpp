#include "mpp/net/pyobject.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

namespace mpp::net {

bool operator==(const Tuple& a, const Tuple& b) { return a.items == b.items; }
bool operator==(const List& a, const List& b) { return a.items == b.items; }
bool operator==(const Dict& a, const Dict& b) { return a.items == b.items; }
bool operator==(const Set& a, const Set& b) { return a.frozen == b.frozen && a.items == b.items; }
bool operator==(const ExceptionValue& a, const ExceptionValue& b) {
  return a.module == b.module && a.name == b.name && a.args == b.args && a.state == b.state;
}

const PyObject* Dict::find(const PyObject& key) const {
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

namespace {

int cmp(const PyObject& a, const PyObject& b);

template <class T>
int cmp_scalar(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

int cmp_seq(const std::vector<PyObject>& a, const std::vector<PyObject>& b) {
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i)
    if (int c = cmp(a[i], b[i])) return c;
  return cmp_scalar(a.size(), b.size());
}

int cmp_pairs(const std::vector<std::pair<PyObject, PyObject>>& a,
              const std::vector<std::pair<PyObject, PyObject>>& b) {
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (int c = cmp(a[i].first, b[i].first)) return c;
    if (int c = cmp(a[i].second, b[i].second)) return c;
  }
  return cmp_scalar(a.size(), b.size());
}

int cmp(const PyObject& a, const PyObject& b) {
  const auto& va = a.variant();
  const auto& vb = b.variant();
  if (va.index() != vb.index()) return cmp_scalar(va.index(), vb.index());
  return std::visit(
      [&](const auto& x) -> int {
        using T = std::decay_t<decltype(x)>;
        const T& y = std::get<T>(vb);
        if constexpr (std::is_same_v<T, None>) {
          return 0;
        } else if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::int64_t> ||
                             std::is_same_v<T, double> || std::is_same_v<T, std::string>) {
          return cmp_scalar(x, y);
        } else if constexpr (std::is_same_v<T, BigInt>) {
          return cmp_scalar(x.le_bytes, y.le_bytes);
        } else if constexpr (std::is_same_v<T, Bytes> || std::is_same_v<T, ByteArray>) {
          return cmp_scalar(x.data, y.data);
        } else if constexpr (std::is_same_v<T, Tuple> || std::is_same_v<T, List>) {
          return cmp_seq(x.items, y.items);
        } else if constexpr (std::is_same_v<T, Set>) {
          if (x.frozen != y.frozen) return x.frozen ? 1 : -1;
          return cmp_seq(x.items, y.items);
        } else if constexpr (std::is_same_v<T, Dict>) {
          return cmp_pairs(x.items, y.items);
        } else if constexpr (std::is_same_v<T, ExceptionValue>) {
          if (int c = cmp_scalar(x.module, y.module)) return c;
          if (int c = cmp_scalar(x.name, y.name)) return c;
          if (int c = cmp_seq(x.args, y.args)) return c;
          return cmp_pairs(x.state, y.state);
        } else if constexpr (std::is_same_v<T, Slice>) {
          return cmp_scalar(std::tie(x.start, x.stop, x.step), std::tie(y.start, y.stop, y.step));
        } else {
          return cmp_scalar(std::tie(x.typeid_, x.host, x.port, x.id),
                            std::tie(y.typeid_, y.host, y.port, y.id));
        }
      },
      va);
}

// Decimal digits of a little-endian two's complement integer of any length.
std::string bigint_decimal(const std::string& le) {
  if (le.empty()) return "0";
  bool neg = static_cast<unsigned char>(le.back()) & 0x80;
  std::vector<std::uint8_t> mag(le.begin(), le.end());
  if (neg) {  // magnitude = ~x + 1
    unsigned carry = 1;
    for (auto& b : mag) {
      unsigned s = static_cast<std::uint8_t>(~b) + carry;
      b = static_cast<std::uint8_t>(s);
      carry = s >> 8;
    }
  }
  std::string digits;
  while (true) {
    while (!mag.empty() && mag.back() == 0) mag.pop_back();
    if (mag.empty()) break;
    unsigned rem = 0;
    for (std::size_t i = mag.size(); i-- > 0;) {
      unsigned cur = (rem << 8) | mag[i];
      mag[i] = static_cast<std::uint8_t>(cur / 10);
      rem = cur % 10;
    }
    digits.push_back(static_cast<char>('0' + rem));
  }
  if (digits.empty()) digits = "0";
  if (neg) digits.push_back('-');
  return {digits.rbegin(), digits.rend()};
}

// Python's float repr: the shortest round-trip digits, positional for exponents in
// [-4, 16), scientific with a signed two-digit exponent otherwise.
std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string s(buf, r.ptr);
  std::string sign;
  if (s[0] == '-') {
    sign = "-";
    s.erase(0, 1);
  }
  auto e = s.find('e');
  int exp = std::stoi(s.substr(e + 1));
  std::string digits;
  for (char c : s.substr(0, e))
    if (c != '.') digits.push_back(c);
  std::string out;
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out = "0." + std::string(static_cast<std::size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<std::size_t>(exp) + 1 >= digits.size()) {
      out = digits + std::string(static_cast<std::size_t>(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<std::size_t>(exp) + 1) + "." +
            digits.substr(static_cast<std::size_t>(exp) + 1);
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    out += eb;
  }
  return sign + out;
}

char quote_for(std::string_view s) {
  return (s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos) ? '"'
                                                                                           : '\'';
}

void escape_byte(std::string& out, unsigned char c) {
  static const char* hex = "0123456789abcdef";
  out += "\\x";
  out.push_back(hex[c >> 4]);
  out.push_back(hex[c & 15]);
}

// The escapes that Python's str and bytes reprs share: a backslash before `\` and the quote,
// and \n \r \t. Returns false, appending nothing, for any other byte.
bool append_shared_escape(std::string& out, unsigned char c, char q) {
  switch (c) {
    case '\n':
      out += "\\n";
      return true;
    case '\r':
      out += "\\r";
      return true;
    case '\t':
      out += "\\t";
      return true;
    default:
      if (c != '\\' && c != static_cast<unsigned char>(q)) return false;
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
      return true;
  }
}

std::string str_repr(std::string_view s) {
  char q = quote_for(s);
  std::string out(1, q);
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (append_shared_escape(out, c, q)) continue;
    if (c < 0x20 || c == 0x7f) {
      escape_byte(out, c);
    } else if (c == 0xc2 && i + 1 < s.size() &&
               static_cast<unsigned char>(s[i + 1]) <= 0xa0) {  // U+0080..U+00A0: not printable
      escape_byte(out, static_cast<unsigned char>(s[i + 1]));
      ++i;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back(q);
  return out;
}

std::string bytes_repr(std::string_view s) {
  char q = quote_for(s);
  std::string out = "b";
  out.push_back(q);
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (append_shared_escape(out, c, q)) continue;
    if (c < 0x20 || c >= 0x7f) {
      escape_byte(out, c);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back(q);
  return out;
}

std::string join(const std::vector<PyObject>& items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += repr(items[i]);
  }
  return out;
}

std::string join_pairs(const std::vector<std::pair<PyObject, PyObject>>& items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += repr(items[i].first) + ": " + repr(items[i].second);
  }
  return out;
}

}  // namespace

bool operator<(const PyObject& a, const PyObject& b) { return cmp(a, b) < 0; }

std::string PyObject::type_name() const {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, None>)
          return "NoneType";
        else if constexpr (std::is_same_v<T, bool>)
          return "bool";
        else if constexpr (std::is_same_v<T, std::int64_t> || std::is_same_v<T, BigInt>)
          return "int";
        else if constexpr (std::is_same_v<T, double>)
          return "float";
        else if constexpr (std::is_same_v<T, std::string>)
          return "str";
        else if constexpr (std::is_same_v<T, Bytes>)
          return "bytes";
        else if constexpr (std::is_same_v<T, ByteArray>)
          return "bytearray";
        else if constexpr (std::is_same_v<T, Tuple>)
          return "tuple";
        else if constexpr (std::is_same_v<T, List>)
          return "list";
        else if constexpr (std::is_same_v<T, Dict>)
          return "dict";
        else if constexpr (std::is_same_v<T, Set>)
          return x.frozen ? "frozenset" : "set";
        else if constexpr (std::is_same_v<T, ExceptionValue>)
          return x.name;
        else if constexpr (std::is_same_v<T, Slice>)
          return "slice";
        else
          return "Token";
      },
      v_);
}

std::string repr(const PyObject& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, None>) {
          return "None";
        } else if constexpr (std::is_same_v<T, bool>) {
          return x ? "True" : "False";
        } else if constexpr (std::is_same_v<T, std::int64_t>) {
          return std::to_string(x);
        } else if constexpr (std::is_same_v<T, BigInt>) {
          return bigint_decimal(x.le_bytes);
        } else if constexpr (std::is_same_v<T, double>) {
          return float_repr(x);
        } else if constexpr (std::is_same_v<T, std::string>) {
          return str_repr(x);
        } else if constexpr (std::is_same_v<T, Bytes>) {
          return bytes_repr(x.data);
        } else if constexpr (std::is_same_v<T, ByteArray>) {
          return "bytearray(" + bytes_repr(x.data) + ")";
        } else if constexpr (std::is_same_v<T, Tuple>) {
          return "(" + join(x.items) + (x.items.size() == 1 ? ",)" : ")");
        } else if constexpr (std::is_same_v<T, List>) {
          return "[" + join(x.items) + "]";
        } else if constexpr (std::is_same_v<T, Dict>) {
          return "{" + join_pairs(x.items) + "}";
        } else if constexpr (std::is_same_v<T, Set>) {
          if (x.items.empty()) return x.frozen ? "frozenset()" : "set()";
          std::string inner = "{" + join(x.items) + "}";
          return x.frozen ? "frozenset(" + inner + ")" : inner;
        } else if constexpr (std::is_same_v<T, ExceptionValue>) {
          return x.name + "(" + join(x.args) + ")";
        } else if constexpr (std::is_same_v<T, Slice>) {
          auto bound = [](const std::optional<std::int64_t>& b) {
            return b ? std::to_string(*b) : std::string("None");
          };
          return "slice(" + bound(x.start) + ", " + bound(x.stop) + ", " + bound(x.step) + ")";
        } else {
          std::string addr = x.port < 0
                                 ? str_repr(x.host)
                                 : "(" + str_repr(x.host) + ", " + std::to_string(x.port) + ")";
          return "Token(typeid=" + str_repr(x.typeid_) + ", address=" + addr +
                 ", id=" + str_repr(x.id) + ")";
        }
      },
      v.variant());
}

PyObject dict_key(const PyObject& v) {
  return std::visit(
      [&](const auto& x) -> PyObject {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) {
          return std::int64_t{x ? 1 : 0};
        } else if constexpr (std::is_same_v<T, double>) {
          // Integral floats inside std::int64_t are that int (-0.0 is 0).
          if (std::isfinite(x) && x == std::trunc(x) && x >= -0x1p63 && x < 0x1p63)
            return static_cast<std::int64_t>(x);
          return v;
        } else if constexpr (std::is_same_v<T, Tuple> || std::is_same_v<T, List>) {
          T out;
          out.items.reserve(x.items.size());
          for (const auto& i : x.items) out.items.push_back(dict_key(i));
          return out;
        } else if constexpr (std::is_same_v<T, Set>) {
          Set out{{}, x.frozen};
          for (const auto& i : x.items) out.items.push_back(dict_key(i));
          std::sort(out.items.begin(), out.items.end());
          out.items.erase(std::unique(out.items.begin(), out.items.end()), out.items.end());
          return out;
        } else if constexpr (std::is_same_v<T, Dict>) {
          Dict out;
          for (const auto& [k, i] : x.items) out.items.emplace_back(dict_key(k), dict_key(i));
          std::sort(out.items.begin(), out.items.end(),
                    [](const auto& a, const auto& b) { return a.first < b.first; });
          return out;
        } else {
          return v;
        }
      },
      v.variant());
}

std::vector<std::size_t> Slice::indices(std::size_t length) const {
  // CPython's PySlice_Unpack + PySlice_AdjustIndices, in 64-bit arithmetic.
  std::int64_t n = static_cast<std::int64_t>(length);
  std::int64_t st = step.value_or(1);
  if (st == 0) throw ValueError("slice step cannot be zero");
  auto adjust = [&](const std::optional<std::int64_t>& b, std::int64_t dflt) {
    if (!b) return dflt;
    std::int64_t v = *b;
    if (v < 0) {
      v += n;
      if (v < 0) v = st < 0 ? -1 : 0;
    } else if (v >= n) {
      v = st < 0 ? n - 1 : n;
    }
    return v;
  };
  std::int64_t lo = adjust(start, st < 0 ? n - 1 : 0);
  std::int64_t hi = adjust(stop, st < 0 ? -1 : n);
  std::vector<std::size_t> out;
  for (std::int64_t i = lo; st > 0 ? i < hi : i > hi; i += st)
    out.push_back(static_cast<std::size_t>(i));
  return out;
}

bool py_equal(const PyObject& a, const PyObject& b) {
  auto plain = [](const PyObject& v) {
    return !(v.is<bool>() || v.is<double>() || v.is<Tuple>() || v.is<List>() || v.is<Set>() ||
             v.is<Dict>());
  };
  if (plain(a) && plain(b)) return a == b;
  if (a.is<double>() && b.is<double>()) return a.get<double>() == b.get<double>();  // nan != nan
  return dict_key(a) == dict_key(b);
}

namespace detail {

void throw_mismatch(const std::string& wanted, const PyObject& got) {
  throw TypeMismatch("expected a Python value convertible to " + wanted + ", got " +
                     got.type_name() + " " + repr(got).substr(0, 200));
}

void throw_int_range(const std::string& wanted, const PyObject& got) {
  throw TypeMismatch("the Python int " + repr(got) + " does not fit in " + wanted);
}

}  // namespace detail
}  // namespace mpp::net
