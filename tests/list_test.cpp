#include "mpp/list.hpp"

#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

#include "mpp/errors.hpp"
#include "mpp/manager.hpp"
#include "support/child.hpp"

TEST_CASE("List has Python's list methods") {
  mpp::Manager m(std::size_t{1} << 20);
  auto l = m.list<int>("l");
  CHECK(l.empty());
  l.append(1);
  l.append(2);
  l.extend({3, 4, 5});
  CHECK(l.to_vector() == std::vector<int>{1, 2, 3, 4, 5});
  CHECK(l.get(0) == 1);
  CHECK(l.get(-1) == 5);
  CHECK(l[-2] == 4);
  CHECK_THROWS_AS(l.get(5), mpp::IndexError);
  CHECK_THROWS_AS(l.get(-6), mpp::IndexError);
  l.set(-1, 50);
  CHECK(l.get(4) == 50);
  l.insert(0, 0);
  l.insert(-1, 40);     // before the last, as in Python
  l.insert(100, 60);    // clamps to the end
  CHECK(l.to_vector() == std::vector<int>{0, 1, 2, 3, 4, 40, 50, 60});
  CHECK(l.pop() == 60);
  CHECK(l.pop(0) == 0);
  CHECK(l.pop(2) == 3);
  CHECK(l.to_vector() == std::vector<int>{1, 2, 4, 40, 50});
  l.append(2);
  CHECK(l.count(2) == 2);
  CHECK(l.index(2) == 1);
  CHECK(l.index(2, 2) == 5);
  CHECK_THROWS_AS(l.index(99), mpp::ValueError);
  l.remove(2);
  CHECK(l.to_vector() == std::vector<int>{1, 4, 40, 50, 2});
  CHECK_THROWS_AS(l.remove(99), mpp::ValueError);
  int sum = 0;
  l.for_each([&](const int& v) { sum += v; });
  CHECK(sum == 97);
  CHECK(l.read().view(-1) == 2);
  l.clear();
  CHECK(l.size() == 0);
  CHECK_THROWS_AS(l.pop(), mpp::IndexError);
  CHECK(l.check().empty());

  auto s = m.list<std::string>("s");
  s.extend(std::vector<std::string>{"a", "bb", "ccc"});
  auto r = s.read();
  std::string_view v = r.view(1);
  CHECK(v == "bb");
}

TEST_CASE("a full segment is SegmentFull and leaves the list unchanged") {
  mpp::Manager m(std::size_t{256} << 10);
  auto l = m.list<std::string>("l");
  std::size_t n = 0;
  try {
    for (;; ++n) l.append(std::string(1000, 'x'));
  } catch (const mpp::SegmentFull&) {
  }
  CHECK(l.size() == n);
  CHECK_THROWS_AS(l.extend(std::vector<std::string>(10, std::string(5000, 'y'))), mpp::SegmentFull);
  CHECK(l.size() == n);
  CHECK(l.check().empty());
  l.pop();
  l.append("ok");
  CHECK(l.get(-1) == "ok");
}

TEST_CASE("processes append concurrently and nothing is lost") {
  mpp::Manager m(std::size_t{2} << 20);
  auto l = m.list<int>("l");
  std::vector<std::unique_ptr<mpp::test::Child>> kids;
  for (int p = 0; p < 4; ++p) {
    kids.push_back(std::make_unique<mpp::test::Child>([&, p](int) {
      for (int i = 0; i < 1000; ++i) l.append(p * 1000 + i);
    }));
  }
  for (auto& k : kids) CHECK(k->exit_code() == 0);
  auto v = l.to_vector();
  std::sort(v.begin(), v.end());
  std::vector<int> want(4000);
  for (int i = 0; i < 4000; ++i) want[i] = i;
  CHECK(v == want);
}

TEST_CASE("SIGKILL of a child changing a list, 200 times: the list is valid and usable") {
  mpp::Manager m(std::size_t{4} << 20);
  auto l = m.list<std::string>("l");
  std::mt19937 rng(11);
  for (int round = 0; round < 200; ++round) {
    const unsigned seed = rng();
    mpp::test::Child child([&](int ready_fd) {
      std::mt19937 r(seed);
      for (long i = 0;; ++i) {
        const auto n = static_cast<long long>(l.size());
        switch (r() % 6) {
          case 0: l.append(std::string(r() % 100, 'a')); break;
          case 1: l.extend(std::vector<std::string>{"x", "yy", "zzz"}); break;
          case 2: if (n > 0) l.insert(static_cast<long long>(r() % n), "ins"); break;
          case 3: if (n > 0) l.pop(static_cast<long long>(r() % n)); break;
          case 4: if (n > 0) l.set(static_cast<long long>(r() % n), "set"); break;
          default: if (n > 400) l.clear(); break;
        }
        if (i == 20) mpp::test::signal_ready(ready_fd);
      }
    });
    REQUIRE(child.wait_ready());
    volatile unsigned spin = 0;
    for (unsigned n = rng() % 30000; n > 0; --n) spin = spin + 1;
    child.kill_and_reap();
    INFO("round " << round);
    REQUIRE(l.check().empty());
    l.append("after");
    REQUIRE(l.get(-1) == "after");
  }
  CHECK(m.segment()->check_heap());
}
