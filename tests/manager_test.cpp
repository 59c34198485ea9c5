#include "mpp/manager.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <random>
#include <string>

#include "mpp/errors.hpp"
#include "support/child.hpp"
#include "support/command.hpp"

namespace {

bool shm_exists(const std::string& name) {
  struct stat st {};
  return stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

std::string run_helper(const std::string& args) {
  return mpp::test::run_command(std::string(MPP_ATTACH_HELPER) + " " + args).out;
}

}  // namespace

TEST_CASE("a Manager creates, attaches and removes its segment") {
  std::string name = "mpp-test-manager-" + std::to_string(getpid());
  {
    mpp::Manager m(name, 1 << 20);
    CHECK(m.name() == name);
    CHECK(m.is_creator());
    CHECK(m.size() == (1u << 20));
    CHECK(m.free_bytes() > 500'000);
    auto other = mpp::Manager::attach(name);
    CHECK_FALSE(other.is_creator());
    CHECK_THROWS_AS(mpp::Manager(name, 1 << 20), mpp::FileExistsError);
  }
  CHECK_FALSE(shm_exists(name));
  CHECK_THROWS_AS(mpp::Manager::attach(name), mpp::FileNotFoundError);
  CHECK_THROWS_AS(mpp::Manager("", 1 << 20), mpp::ValueError);
  CHECK_THROWS_AS(mpp::Manager("a/b", 1 << 20), mpp::ValueError);
}

TEST_CASE("an anonymous Manager is in no file of /dev/shm, grows, and is shared with forked children") {
  mpp::Manager a, b;
  CHECK(a.name().empty());
  CHECK(a.size() == mpp::Manager::default_bytes);
  CHECK(a.max_size() > a.size());
  auto d = a.dict<int, int>("d");
  mpp::test::Child child([&](int) {
    auto l = a.list<int>("l");
    l.append(getpid());
    d.set(1, 42);
    for (int i = 0; i < 20000; ++i) d.set(1000 + i, i);  // more than the initial size holds
  });
  CHECK(child.exit_code() == 0);
  CHECK(d.get(1) == 42);
  CHECK(d.get(20999) == 19999);
  CHECK(a.size() > mpp::Manager::default_bytes);
  CHECK(a.list<int>("l").get(0) == child.pid());
  CHECK(b.dict<int, int>("d").size() == 0);  // another Manager, another segment
}

TEST_CASE("a persisted Manager's segment stays until removed") {
  std::string name = "mpp-test-persist-" + std::to_string(getpid());
  {
    mpp::Manager m(name, 1 << 20, {.persist = true});
    m.dict<std::string, int>("d").set("x", 1);
  }
  CHECK(shm_exists(name));
  {
    auto m = mpp::Manager::attach(name);
    CHECK(m.dict<std::string, int>("d").at("x") == 1);
  }
  CHECK(mpp::detail::Segment::unlink(name));
}

TEST_CASE("the same name gives the same object, other types are a TypeMismatch naming both") {
  mpp::Manager m;
  auto d1 = m.dict<std::string, int>("d");
  auto d2 = m.dict<std::string, int>("d");
  d1.set("k", 5);
  CHECK(d2.at("k") == 5);
  CHECK_THROWS_WITH((m.dict<int, int>("d")),
                    Catch::Contains("dict<std::string, int>") && Catch::Contains("dict<int, int>"));
  CHECK_THROWS_AS(m.list<int>("d"), mpp::TypeMismatch);
  auto l = m.list<double>("l");
  CHECK_THROWS_WITH(m.list<float>("l"), Catch::Contains("list<double>") && Catch::Contains("list<float>"));
}

TEST_CASE("an unrelated process attaches to a Manager and uses its dict and list") {
  std::string name = "mpp-test-exec-manager-" + std::to_string(getpid());
  mpp::Manager m(name, 1 << 20);
  auto d = m.dict<std::string, int>("d");
  d.set("from-parent", 1);
  auto out = run_helper("manager " + name);
  CHECK_THAT(out, Catch::StartsWith("ok parent=1"));
  CHECK(d.at("from-helper") == 2);
  CHECK(m.list<std::string>("l").to_vector() == std::vector<std::string>{"helper"});
}

TEST_CASE("a dict churned with values of 1 B to 64 KiB reuses its freed space for any size") {
  // The Manager's own segment, fixed at 64 MiB so that reuse (not growth) is what is tested.
  // 100,000 operations (3 GiB of value bytes copied): the 1,000,000-operation churn runs on
  // the segment's heap directly in segment_test, where it is fast enough for CI under the
  // sanitizers too.
  mpp::Manager m(std::string("mpp-test-churn-") + std::to_string(getpid()), 64 << 20,
                 {.max_bytes = 64 << 20});
  auto d = m.dict<int, std::string>("churn");
  std::mt19937 rng(11);
  const std::string big(64 << 10, 'v');
  for (int op = 0; op < 100'000; ++op) {
    int key = static_cast<int>(rng() % 600);
    if (rng() % 2) {
      d.set(key, big.substr(0, 1 + rng() % (64 << 10)));
    } else {
      d.erase(key);
    }
  }
  auto seg = mpp::detail::Access::segment(m);
  REQUIRE(seg->check_heap());
  void* quarter = seg->allocate(m.free_bytes() / 4);
  CHECK(quarter != nullptr);
  seg->deallocate(quarter);
  d.clear();
  const std::size_t free = m.free_bytes();
  CHECK(free > (60u << 20));
  void* most = seg->allocate(free / 2);  // the dict's bucket array may sit mid-heap
  CHECK(most != nullptr);
  seg->deallocate(most);
}

TEST_CASE("a default Manager's unbounded queue holds thousands of messages with no consumer") {
  // The ring bounds how many messages wait; a growing segment starts small, so a ring sized
  // by its start would make an unbounded queue block after a few dozen puts.
  mpp::Manager m;
  auto q = m.queue<std::string>("q");
  for (int i = 0; i < 5000; ++i) q.put_nowait("message " + std::to_string(i));
  CHECK(q.qsize() == 5000);
  for (int i = 0; i < 5000; ++i) REQUIRE(q.get_nowait() == "message " + std::to_string(i));
  CHECK(q.empty());
  // A message larger than the segment is now: the segment grows to hold it.
  const std::string big(m.size() + (8 << 20), 'x');
  q.put(big);
  CHECK(q.get() == big);
}
