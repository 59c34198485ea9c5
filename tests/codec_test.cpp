#include "mpp/detail/codec.hpp"

#include <array>
#include <boost/serialization/map.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <catch2/catch.hpp>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "mpp/archive.hpp"  // Order below has serialize()

namespace {

struct Point {
  int x;
  double y;
};

struct Unsendable {  // neither trivially copyable nor serializable
  std::string s;
};

struct Order {
  std::string customer;
  std::vector<int> items;
  std::map<std::string, double> prices;
  template <class Ar>
  void serialize(Ar& ar, unsigned) {
    ar & customer & items & prices;
  }
  bool operator==(const Order&) const = default;
};

}  // namespace

using mpp::detail::decode;
using mpp::detail::encode;
using mpp::detail::Encoding;
using mpp::detail::encoding_of;

TEST_CASE("the codec picks inline bytes, strings, its native format or archives by type") {
  STATIC_REQUIRE(encoding_of<int> == Encoding::trivial);
  STATIC_REQUIRE(encoding_of<Point> == Encoding::trivial);
  STATIC_REQUIRE(encoding_of<std::string> == Encoding::string);
  STATIC_REQUIRE(encoding_of<Order> == Encoding::serialized);
  STATIC_REQUIRE(encoding_of<std::vector<int>> == Encoding::native);
  STATIC_REQUIRE(encoding_of<std::vector<Order>> == Encoding::native);
  STATIC_REQUIRE(mpp::is_sendable_v<std::map<std::string, std::vector<std::optional<Point>>>>);
  STATIC_REQUIRE_FALSE(mpp::is_sendable_v<int*>);
  STATIC_REQUIRE_FALSE(mpp::is_sendable_v<std::vector<const char*>>);
  STATIC_REQUIRE_FALSE(mpp::is_sendable_v<std::vector<Unsendable>>);
}

namespace {
template <class T>
std::size_t round_trip_size(const T& v) {
  auto e = encode(v);
  CHECK(decode<T>(e.bytes()) == v);
  return e.size();
}
}  // namespace

TEST_CASE("standard containers round-trip natively, nested, of any supported element") {
  round_trip_size(std::vector<std::string>{"a", "", std::string(300, 'x')});
  round_trip_size(std::map<std::string, std::vector<double>>{{"x", {1.5, -2}}, {"y", {}}});
  round_trip_size(std::unordered_map<int, std::string>{{1, "one"}, {2, "two"}});
  round_trip_size(std::set<std::string>{"q", "r"});
  round_trip_size(std::deque<std::pair<int, std::string>>{{1, "a"}, {2, "b"}});
  round_trip_size(std::list<std::optional<std::string>>{std::nullopt, "z"});
  round_trip_size(std::tuple<int, std::string, std::vector<char>>{1, "s", {'a', 'b'}});
  round_trip_size(std::array<std::string, 2>{"a", "b"});
  round_trip_size(std::variant<int, std::string>{std::string("v")});
  round_trip_size(std::vector<std::variant<int, std::vector<std::string>>>{1, std::vector<std::string>{"x"}});
  round_trip_size(std::vector<bool>{true, false, true});
  round_trip_size(std::optional<std::vector<int>>{std::vector<int>{4}});
  round_trip_size(std::optional<std::vector<int>>{});
  round_trip_size(std::vector<std::vector<int>>{{}, {1}, {2, 3}});
  // Elements with serialize() inside a standard container: the container is native, each
  // element its own archive.
  round_trip_size(std::vector<Order>{{"ada", {1}, {{"tea", 2.5}}}, {"bob", {}, {}}});
}

TEST_CASE("the native format is compact: a count, then trivially copyable elements as one block") {
  CHECK(round_trip_size(std::vector<int>{1, 2, 3}) == 1 + 3 * sizeof(int));
  CHECK(round_trip_size(std::vector<double>(200, 0.5)) == 2 + 200 * sizeof(double));
  CHECK(round_trip_size(std::vector<int>{}) == 1);
  CHECK(round_trip_size(std::map<std::string, int>{{"ab", 7}}) == 1 + (1 + 2) + sizeof(int));
  CHECK(round_trip_size(std::pair<std::string, int>{"ab", 7}) == (1 + 2) + sizeof(int));
  CHECK(round_trip_size(std::optional<std::string>{}) == 1);
}

TEST_CASE("corrupt native bytes are a DecodeError: truncated, left over, or lying counts") {
  std::vector<std::string> v{"abc", "de"};
  auto e = encode(v);
  for (std::size_t n = 0; n < e.size(); ++n) {
    CHECK_THROWS_AS(decode<std::vector<std::string>>(e.bytes().first(n)), mpp::DecodeError);
  }
  std::string longer(mpp::detail::as_chars(e.bytes()));
  longer += 'x';
  CHECK_THROWS_WITH(decode<std::vector<std::string>>(mpp::detail::as_bytes(longer)),
                    Catch::Contains("left over"));
  // A count of 2^62 elements in a 10-byte message: refused before anything is allocated.
  std::string lying = "\x80\x80\x80\x80\x80\x80\x80\x80\x40" + std::string(1, 'x');
  CHECK_THROWS_WITH(decode<std::vector<int>>(mpp::detail::as_bytes(lying)),
                    Catch::Contains("exceeds"));
  CHECK_THROWS_WITH(decode<std::vector<std::string>>(mpp::detail::as_bytes(lying)),
                    Catch::Contains("exceeds"));
  std::string bad_optional = "\x02";
  CHECK_THROWS_AS(decode<std::optional<int>>(mpp::detail::as_bytes(bad_optional)), mpp::DecodeError);
  std::string bad_variant = "\x05";
  CHECK_THROWS_AS((decode<std::variant<int, std::string>>(mpp::detail::as_bytes(bad_variant))),
                  mpp::DecodeError);
  for (int seed = 0; seed < 200; ++seed) {  // random bytes: an error or a value, never a crash
    std::string junk;
    for (int i = 0; i < 1 + seed % 40; ++i) junk.push_back(static_cast<char>((seed * 131 + i * 71) & 0xff));
    try {
      (void)decode<std::map<std::string, std::vector<std::optional<int>>>>(mpp::detail::as_bytes(junk));
    } catch (const mpp::DecodeError&) {
    }
  }
}

TEST_CASE("trivial values round-trip through their own bytes, without a copy") {
  Point p{3, 4.5};
  auto e = encode(p);
  CHECK(e.size() == sizeof(Point));
  CHECK(static_cast<const void*>(e.bytes().data()) == static_cast<const void*>(&p));
  auto q = decode<Point>(e.bytes());
  CHECK(q.x == 3);
  CHECK(q.y == 4.5);
  const Point& v = mpp::detail::view<Point>(e.bytes());
  CHECK(&v == &p);
}

TEST_CASE("strings are their characters and are borrowed as views") {
  std::string s("hello\0world", 11);
  auto e = encode(s);
  CHECK(e.size() == 11);
  CHECK(decode<std::string>(e.bytes()) == s);
  CHECK(mpp::detail::view<std::string>(e.bytes()) == std::string_view(s));
  CHECK(decode<std::string>(encode(std::string()).bytes()).empty());
}

TEST_CASE("a user struct with a vector and a map goes through Boost.Serialization") {
  Order o{"ada", {1, 2, 3}, {{"tea", 2.5}, {"cake", 4.0}}};
  auto e = encode(o);
  CHECK(decode<Order>(e.bytes()) == o);
  mpp::detail::Encoded moved = std::move(e);
  CHECK(decode<Order>(moved.bytes()) == o);
}

TEST_CASE("bytes that cannot be the type are a DecodeError, not a crash") {
  int i = 7;
  auto e = encode(i);
  CHECK_THROWS_AS(decode<double>(e.bytes()), mpp::DecodeError);
  CHECK_THROWS_AS(decode<Order>(e.bytes()), mpp::DecodeError);
  std::string garbage(64, '\xff');
  CHECK_THROWS_AS(decode<Order>(mpp::detail::as_bytes(garbage)), mpp::DecodeError);
  Order o{"x", {1}, {}};
  auto full = encode(o);
  auto truncated = full.bytes().first(full.size() - 3);
  CHECK_THROWS_AS(decode<Order>(truncated), mpp::DecodeError);
}

TEST_CASE("type names are readable") {
  CHECK(mpp::detail::type_name<int>() == "int");
  CHECK(mpp::detail::type_name<std::string>() == "std::string");
  CHECK(mpp::detail::type_name<std::vector<std::string>>().find("std::vector<std::string") == 0);
}
