// Python habits: d["a"] += 1 is atomic; Dict, List, Value and Array print as Python's
// repr would.
#include "mpp/repr.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "mpp/manager.hpp"
#include "mpp/process.hpp"
#include "support/child.hpp"

namespace {
struct Opaque {
  int x;
};
enum class Color { red = 2 };
}  // namespace

TEST_CASE("repr writes values as Python writes the same data") {
  CHECK(mpp::repr(1) == "1");
  CHECK(mpp::repr(-7LL) == "-7");
  CHECK(mpp::repr(true) == "True");
  CHECK(mpp::repr(2.0) == "2.0");
  CHECK(mpp::repr(0.1) == "0.1");
  CHECK(mpp::repr(1e16) == "1e+16");
  CHECK(mpp::repr(1e-5) == "1e-05");
  CHECK(mpp::repr(std::numeric_limits<double>::infinity()) == "inf");
  CHECK(mpp::repr(std::string("a")) == "'a'");
  CHECK(mpp::repr(std::string("it's")) == "\"it's\"");
  CHECK(mpp::repr(std::string("a\nb\\")) == "'a\\nb\\\\'");
  CHECK(mpp::repr('x') == "'x'");
  CHECK(mpp::repr(std::vector<int>{1, 2}) == "[1, 2]");
  CHECK(mpp::repr(std::vector<int>{}) == "[]");
  CHECK(mpp::repr(std::map<std::string, int>{{"a", 1}, {"b", 2}}) == "{'a': 1, 'b': 2}");
  CHECK(mpp::repr(std::set<int>{3, 1}) == "{1, 3}");
  CHECK(mpp::repr(std::set<int>{}) == "set()");
  CHECK(mpp::repr(std::pair<int, std::string>{1, "x"}) == "(1, 'x')");
  CHECK(mpp::repr(std::tuple<int>{1}) == "(1,)");
  CHECK(mpp::repr(std::tuple<>{}) == "()");
  CHECK(mpp::repr(std::optional<int>{}) == "None");
  CHECK(mpp::repr(std::vector<std::optional<double>>{1.5, std::nullopt}) == "[1.5, None]");
  CHECK(mpp::repr(std::variant<int, std::string>{std::string("s")}) == "'s'");
  CHECK(mpp::repr(Color::red) == "2");
  CHECK(mpp::repr(Opaque{1}).find(" object>") != std::string::npos);
}

TEST_CASE("Dict, List, Value and Array print with operator<< and have repr()") {
  mpp::Manager m(1 << 20);
  auto d = m.dict<std::string, int>("d");
  d["a"] = 1;
  auto l = m.list<double>("l");
  l.append(1.5);
  l.append(2);
  auto v = m.value<int>("v", 5);
  auto a = m.array<int>("a", 3);
  a.set(1, 7);
  CHECK(mpp::repr(d) == "{'a': 1}");
  CHECK(mpp::repr(l) == "[1.5, 2.0]");
  CHECK(mpp::repr(v) == "5");
  CHECK(mpp::repr(a) == "[0, 7, 0]");
  std::ostringstream os;
  os << d << ' ' << l << ' ' << v << ' ' << a;
  CHECK(os.str() == "{'a': 1} [1.5, 2.0] 5 [0, 7, 0]");
  auto empty = m.dict<int, std::vector<std::string>>("e");
  CHECK(mpp::repr(empty) == "{}");
  empty.set(3, {"x"});
  CHECK(mpp::repr(empty) == "{3: ['x']}");
}

TEST_CASE("d[k] += x and the other compound assignments modify one item atomically") {
  mpp::Manager m(1 << 20);
  auto d = m.dict<std::string, long>("counts");
  d["a"] = 10;
  d["a"] += 5;
  d["a"] -= 3;
  d["a"] *= 2;
  d["a"] /= 4;
  d["a"] %= 4;
  CHECK(d.at("a") == 2);
  d["a"] <<= 3;
  d["a"] |= 1;
  d["a"] ^= 3;
  d["a"] &= 0xff;
  CHECK(d.at("a") == ((2 << 3 | 1) ^ 3));
  d["fresh"] += 1;  // absent: starts from long{}, as a defaultdict(int)
  CHECK(d.at("fresh") == 1);
  auto s = m.dict<int, std::string>("s");
  s[1] = "ab";
  s[1] += "cd";
  CHECK(s.at(1) == "abcd");

  // Four processes add 500 each to one key: a read-then-write (d[k] = d[k] + 1) would
  // lose updates; += is modify() and loses none.
  constexpr int kids = 4, each = 500;
  std::vector<std::unique_ptr<mpp::test::Child>> children;
  for (int c = 0; c < kids; ++c) {
    children.push_back(std::make_unique<mpp::test::Child>([&](int) {
      for (int i = 0; i < each; ++i) d["hits"] += 1;
    }));
  }
  for (auto& c : children) CHECK(c->exit_code() == 0);
  CHECK(d.at("hits") == kids * each);
}
