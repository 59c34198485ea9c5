#include "mpp/dict.hpp"

#include <signal.h>
#include <unistd.h>

#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "mpp/archive.hpp"  // Job below has serialize()
#include "mpp/errors.hpp"
#include "mpp/manager.hpp"
#include "support/child.hpp"

namespace {

struct Job {
  std::string name;
  std::vector<int> steps;
  template <class Ar>
  void serialize(Ar& ar, unsigned) {
    ar & name & steps;
  }
  bool operator==(const Job&) const = default;
};

}  // namespace

TEST_CASE("Dict has Python's dict methods") {
  mpp::Manager m(std::size_t{4} << 20);
  auto d = m.dict<std::string, int>("d");
  CHECK(d.size() == 0);
  d.set("a", 1);
  d["b"] = 2;
  CHECK(static_cast<int>(d["a"]) == 1);
  CHECK(d.at("b") == 2);
  CHECK(d.get("zz") == std::nullopt);
  CHECK(d.get("zz", 7) == 7);
  CHECK(d.contains("a"));
  CHECK_FALSE(d.contains("zz"));
  CHECK_THROWS_AS(d.at("zz"), mpp::KeyError);
  CHECK_THROWS_WITH(d.pop("zz"), Catch::Contains("'zz'"));
  CHECK(d.pop("zz", -1) == -1);
  CHECK(d.setdefault("c", 3) == 3);
  CHECK(d.setdefault("c", 4) == 3);
  d.set("a", 10);  // replace keeps the insertion position
  CHECK(d.keys() == std::vector<std::string>{"a", "b", "c"});
  CHECK(d.values() == std::vector<int>{10, 2, 3});
  CHECK(d.pop("b") == 2);
  CHECK_FALSE(d.erase("b"));
  CHECK(d.erase("c"));
  d.update({{"x", 1}, {"y", 2}, {"x", 3}});
  CHECK(d.items() == std::vector<std::pair<std::string, int>>{{"a", 10}, {"x", 3}, {"y", 2}});
  std::map<std::string, int> more{{"m", 5}};
  d.update(more);
  CHECK(d.size() == 4);
  CHECK(d.modify("a", [](int& v) { v *= 2; }) == 20);
  CHECK(d.modify("new", [](int& v) { v += 1; }, 100) == 101);
  int total = 0;
  d.for_each([&](std::string_view k, const int& v) {
    CHECK_FALSE(k.empty());
    total += v;
  });
  CHECK(total == 20 + 3 + 2 + 5 + 101);
  {
    auto r = d.read();
    const int& v = r.view("a");
    CHECK(v == 20);
    CHECK_THROWS_AS(d.set("a", 1), mpp::ValueError);  // would wait for this very reader
  }
  d.clear();
  CHECK(d.size() == 0);
  CHECK(d.keys().empty());
  CHECK(d.check().empty());
}

TEST_CASE("Dict grows its index, keeps many keys and stays sound") {
  mpp::Manager m(std::size_t{8} << 20);
  auto d = m.dict<int, std::string>("big");
  for (int i = 0; i < 5000; ++i) d.set(i, "v" + std::to_string(i));
  CHECK(d.size() == 5000);
  for (int i = 0; i < 5000; i += 7) CHECK(d.at(i) == "v" + std::to_string(i));
  for (int i = 0; i < 5000; i += 2) d.erase(i);
  CHECK(d.size() == 2500);
  CHECK(d.check().empty());
  auto r = m.dict<int, std::string>("big").read();  // the guard keeps its own handle
  std::string_view sv = r.view(4999);
  CHECK(sv == "v4999");
}

TEST_CASE("Dict stores serialized user types") {
  mpp::Manager m(std::size_t{1} << 20);
  auto d = m.dict<std::string, Job>("jobs");
  d.set("j", Job{"build", {1, 2, 3}});
  CHECK(d.at("j") == Job{"build", {1, 2, 3}});
  d.modify("j", [](Job& j) { j.steps.push_back(4); });
  CHECK(d.at("j").steps.size() == 4);
}

TEST_CASE("N processes x M atomic increments give an exact total") {
  mpp::Manager m(std::size_t{1} << 20);
  auto d = m.dict<std::string, long>("counts");
  constexpr int kProcs = 4, kIncrements = 2000;
  std::vector<std::unique_ptr<mpp::test::Child>> kids;
  for (int p = 0; p < kProcs; ++p) {
    kids.push_back(std::make_unique<mpp::test::Child>([&](int) {
      for (int i = 0; i < kIncrements; ++i) {
        d.modify("n", [](long& v) { ++v; });
        if (i % 100 == 0) (void)d.get("n");  // readers interleave with writers
      }
    }));
  }
  for (auto& k : kids) CHECK(k->exit_code() == 0);
  CHECK(d.at("n") == kProcs * kIncrements);
}

TEST_CASE("a full segment is SegmentFull and leaves the dict unchanged and usable") {
  mpp::Manager m(std::size_t{256} << 10);
  auto d = m.dict<int, std::string>("d");
  int n = 0;
  try {
    for (;; ++n) d.set(n, std::string(1000, 'x'));
  } catch (const mpp::SegmentFull&) {
  }
  CHECK(n > 10);
  CHECK(d.size() == static_cast<std::size_t>(n));
  CHECK_THROWS_AS(d.update({{-1, "a"}, {-2, std::string(100000, 'y')}}), mpp::SegmentFull);
  CHECK_FALSE(d.contains(-1));  // all or nothing
  CHECK_THROWS_AS(d.set(0, std::string(100000, 'z')), mpp::SegmentFull);
  CHECK(d.at(0) == std::string(1000, 'x'));
  CHECK(d.check().empty());
  d.erase(1);
  d.set(0, "small");
  CHECK(d.at(0) == "small");
  CHECK(d.size() == static_cast<std::size_t>(n - 1));
}

TEST_CASE("SIGKILL of a writer while it holds the dict's lock, 200 times: recovered and valid") {
  mpp::Manager m(std::size_t{4} << 20);
  auto d = m.dict<int, std::string>("d");
  for (int i = 0; i < 50; ++i) d.set(i, "init");
  std::mt19937 rng(7);
  constexpr int kRounds = 200;
  for (int round = 0; round < kRounds; ++round) {
    const unsigned seed = rng();
    const bool hold = round % 2 == 0;
    mpp::test::Child child([&](int ready_fd) {
      std::mt19937 r(seed);
      if (hold) {
        // Dies holding the exclusive lock (tests the lock's recovery).
        d.modify(0, [&](std::string& v) {
          v = "held";
          mpp::test::signal_ready(ready_fd);
          pause();
        });
      }
      // Dies at a random instruction of a stream of changes (inside allocate, a link, a
      // rehash, a clear...).
      for (long i = 0;; ++i) {
        int k = static_cast<int>(r() % 300);
        switch (r() % 6) {
          case 0: case 1: d.set(k, std::string(r() % 200, 'a' + static_cast<char>(k % 26))); break;
          case 2: d.erase(k); break;
          case 3: d.update({{k, "u"}, {k + 1, "v"}}); break;
          case 4: d.modify(k, [](std::string& v) { v += "+"; }); break;
          default:
            if (r() % 50 == 0) d.clear();
            else (void)d.get(k);
        }
        if (i == 20) mpp::test::signal_ready(ready_fd);
      }
    });
    REQUIRE(child.wait_ready());
    volatile unsigned spin = 0;
    for (unsigned n = rng() % 30000; n > 0; --n) spin = spin + 1;
    child.kill_and_reap();
    auto problem = d.check();  // recovers the lock if the child held it
    INFO("round " << round);
    REQUIRE(problem.empty());
    d.set(1000 + round, "after");
    REQUIRE(d.at(1000 + round) == "after");
    if (hold) CHECK(d.get(0) != std::optional<std::string>("held"));  // a dead writer's change is not half-made
  }
  CHECK(d.recoveries() >= kRounds / 2);
  INFO("recoveries " << d.recoveries() << " leaked " << d.leaked_bytes() << " heap recoveries "
                     << mpp::detail::Access::segment(m)->header().heap_recoveries.load());
  CHECK(mpp::detail::Access::segment(m)->check_heap());
  INFO("leaked bytes " << d.leaked_bytes());
  CHECK(d.size() > 0);
}

TEST_CASE("SIGKILL of a reader holding a shared lock does not block writers") {
  mpp::Manager m(std::size_t{1} << 20);
  auto d = m.dict<int, int>("d");
  d.set(1, 1);
  for (int round = 0; round < 20; ++round) {
    mpp::test::Child child([&](int ready_fd) {
      auto r = d.read();
      (void)r.view(1);
      mpp::test::signal_ready(ready_fd);
      pause();
    });
    REQUIRE(child.wait_ready());
    child.kill_and_reap();
    d.set(1, round);  // must clear the dead reader's slot instead of waiting forever
    CHECK(d.at(1) == round);
  }
}
