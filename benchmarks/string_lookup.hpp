// Transparent hash and equality over anything with data() and size() (std::string,
// std::string_view, Boost.Interprocess strings), so that a map keyed by stored strings is
// looked up by a std::string_view without building a key: how the benchmarks' Boost and
// std maps find a word, as mpp's Dict does.
#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

namespace bench {

struct StringHash {
  using is_transparent = void;
  template <class S>
  std::size_t operator()(const S& s) const {
    return std::hash<std::string_view>{}(std::string_view(s.data(), s.size()));
  }
};

struct StringEq {
  using is_transparent = void;
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return std::string_view(a.data(), a.size()) == std::string_view(b.data(), b.size());
  }
};

}  // namespace bench
