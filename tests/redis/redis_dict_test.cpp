// mpp::redis::Dict: mpp::Dict's API on a Redis hash, batches, atomic read-modify-write
// from several processes, and bytes of the wrong type.
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <catch2/catch.hpp>
#include <map>
#include <mpp/redis/dict.hpp>

#include "redis/redis_support.hpp"
#include "support/child.hpp"

using mpp::redis::Connection;
using mpp::redis::Dict;
using mpp::test::Child;

namespace {

struct Point {
  double x = 0, y = 0;
  std::string label;
  bool operator==(const Point&) const = default;
  template <class A>
  void serialize(A& ar, unsigned) {
    ar & x & y & label;
  }
};

}  // namespace

TEST_CASE("set, get, [], contains, erase, pop, setdefault as mpp::Dict") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  auto conn = std::make_shared<Connection>(url);
  Dict<std::string, long> d(conn, mpp::test::unique_name("basic"));
  d.clear();
  CHECK(d.empty());
  d.set("a", 1);
  d["b"] = 2;
  CHECK(d.get("a") == 1);
  CHECK(d.get("zz") == std::nullopt);
  CHECK(d.get("zz", -1) == -1);
  CHECK(d.at("a") == 1);
  CHECK_THROWS_AS(d.at("zz"), mpp::KeyError);
  CHECK(static_cast<long>(d["b"]) == 2);
  try {
    long v = d["missing"];
    (void)v;
    FAIL("read of a missing key");
  } catch (const mpp::KeyError& e) {
    CHECK_THAT(e.what(), Catch::Contains("'missing'"));
  }
  CHECK(d.contains("a"));
  CHECK(!d.contains("c"));
  CHECK(d.size() == 2);
  CHECK(d.erase("a"));
  CHECK(!d.erase("a"));
  CHECK(d.pop("b") == 2);
  CHECK_THROWS_AS(d.pop("b"), mpp::KeyError);
  CHECK(d.pop("b", 7) == 7);
  CHECK(d.setdefault("c", 3) == 3);
  CHECK(d.setdefault("c", 4) == 3);
  CHECK(d.size() == 1);
  d.update({{"x", 10}, {"y", 20}});
  CHECK(d.size() == 3);
  d.clear();
  CHECK(d.size() == 0);
}

TEST_CASE("update, get_many, keys, values and items with user types") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  Dict<int, Point> d(url, mpp::test::unique_name("points"));
  d.clear();
  std::map<int, Point> m;
  for (int i = 0; i < 2500; ++i) m[i] = Point{i * 0.5, -i * 1.0, "p" + std::to_string(i)};
  d.update(m);  // three HSETs in one round trip
  CHECK(d.size() == 2500);
  auto got = d.get_many(std::vector<int>{0, 1, 5000, 2499});
  REQUIRE(got.size() == 4);
  CHECK(got[0] == m[0]);
  CHECK(got[1] == m[1]);
  CHECK(got[2] == std::nullopt);
  CHECK(got[3] == m[2499]);
  auto items = d.items();
  CHECK(std::map<int, Point>(items.begin(), items.end()) == m);
  auto keys = d.keys();
  std::sort(keys.begin(), keys.end());
  CHECK(keys.size() == 2500);
  CHECK(keys.front() == 0);
  CHECK(keys.back() == 2499);
  CHECK(d.values().size() == 2500);
  d.clear();
}

TEST_CASE("modify() is atomic across processes") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  std::string name = mpp::test::unique_name("counters");
  Dict<std::string, std::int64_t> d(url, name);
  d.clear();
  constexpr int procs = 4, each = 150;
  std::vector<std::unique_ptr<Child>> kids;
  for (int p = 0; p < procs; ++p) {
    kids.push_back(std::make_unique<Child>([&, p](int) {
      Dict<std::string, std::int64_t> mine(url, name);
      for (int i = 0; i < each; ++i) {
        mine.modify("shared", [](std::int64_t& v) { ++v; });
        mine.modify("own" + std::to_string(p), [](std::int64_t& v) { v += 2; }, 100);
      }
    }));
  }
  for (auto& k : kids) CHECK(k->exit_code() == 0);
  CHECK(d.get("shared") == procs * each);
  for (int p = 0; p < procs; ++p) CHECK(d.get("own" + std::to_string(p)) == 100 + 2 * each);
  // A function that throws changes nothing.
  CHECK_THROWS_AS(d.modify("shared", [](std::int64_t&) { throw std::runtime_error("no"); }),
                  std::runtime_error);
  CHECK(d.get("shared") == procs * each);
  CHECK(d.modify("fresh", [](std::int64_t& v) { ++v; }, 41) == 42);
  d.clear();
}

TEST_CASE("bytes of another type are a DecodeError, and the dict stays usable") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  auto conn = std::make_shared<Connection>(url);
  std::string name = mpp::test::unique_name("types");
  Dict<std::string, std::string> strings(conn, name);
  Dict<std::string, std::int32_t> ints(conn, name);
  strings.clear();
  strings.set("k", "not four bytes");
  CHECK_THROWS_AS(ints.get("k"), mpp::DecodeError);
  ints.set("k", 5);
  CHECK(ints.get("k") == 5);
  CHECK(strings.get("k")->size() == 4);
  strings.clear();
}
