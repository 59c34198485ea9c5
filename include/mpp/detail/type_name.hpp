// Readable, stable names of C++ types, made at compile time. They go into a segment's
// object directory (so mpp-inspect can show them without the C++ types) and into
// TypeMismatch messages.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mpp::detail {

template <class T>
constexpr std::string_view raw_type_name() {
  // GCC and Clang both spell the template argument as "T = <name>" in the signature.
  std::string_view p = __PRETTY_FUNCTION__;
  auto start = p.find("T = ") + 4;
  auto end = p.find_first_of(";]", start);
  return p.substr(start, end - start);
}

// The name of T as the compiler spells it, with std::string shortened to its usual name.
template <class T>
std::string type_name() {
  std::string n(raw_type_name<T>());
  static constexpr std::string_view long_string = "std::__cxx11::basic_string<char>";
  for (auto pos = n.find(long_string); pos != std::string::npos; pos = n.find(long_string)) {
    n.replace(pos, long_string.size(), "std::string");
  }
  return n;
}

}  // namespace mpp::detail
