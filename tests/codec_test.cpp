#include "mpp/detail/codec.hpp"

#include <boost/serialization/map.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

namespace {

struct Point {
  int x;
  double y;
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

TEST_CASE("the codec picks inline bytes, strings or archives by type") {
  STATIC_REQUIRE(encoding_of<int> == Encoding::trivial);
  STATIC_REQUIRE(encoding_of<Point> == Encoding::trivial);
  STATIC_REQUIRE(encoding_of<std::string> == Encoding::string);
  STATIC_REQUIRE(encoding_of<Order> == Encoding::serialized);
  STATIC_REQUIRE(encoding_of<std::vector<int>> == Encoding::serialized);
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
