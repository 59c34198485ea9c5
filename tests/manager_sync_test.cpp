// The Manager's factories for Value, Array and the synchronisation primitives: named objects
// found again by name (in forked children and after attach), unique unnamed ones, type
// mismatches, and a lock holder killed inside a Manager's segment.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "mpp/errors.hpp"
#include "mpp/manager.hpp"
#include "support/child.hpp"
#include "support/processes.hpp"

using namespace std::chrono_literals;
using mpp::test::all_zero;
using mpp::test::Child;
using mpp::test::run_children;
using mpp::test::until;

namespace {

std::string test_segment(const char* what) {
  return std::string("mpp-test-sync-") + what + "-" + std::to_string(getpid());
}

bool shm_exists(const std::string& name) {
  struct stat st {};
  return stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

}  // namespace

TEST_CASE("Manager: the same name gives the same object, in this process and after attach") {
  const auto name = test_segment("same");
  {
    mpp::Manager m(name, 1 << 20);
    auto v = m.value<long>("counter", 5);
    CHECK(m.value<long>("counter", 99).value() == 5);  // exists: keeps its value
    auto lock = m.lock("l");
    CHECK(m.lock("l") == lock);
    auto rl = m.rlock("rl");
    CHECK(m.rlock("rl") == rl);
    auto sem = m.semaphore(3, "s");
    sem.acquire();
    CHECK(m.semaphore(10, "s").get_value() == 2);
    auto ev = m.event("e");
    auto arr = m.array<int>("a", 4);
    arr.set(2, 7);
    auto bar = m.barrier(2, "b");

    // An unrelated handle on the segment, as another process would get with attach().
    auto other = mpp::Manager::attach(name);
    CHECK(other.value<long>("counter").value() == 5);
    CHECK(other.array<int>("a", 4).get(2) == 7);
    CHECK(other.semaphore(1, "s").get_value() == 2);
    CHECK(other.barrier(7, "b").parties() == 2);  // exists: keeps its parties
    other.event("e").set();
    CHECK(ev.is_set());

    Child child([&](int) {
      auto attached = mpp::Manager::attach(name);
      attached.value<long>("counter").fetch_add(10);
      attached.lock("l").acquire();
      attached.lock("l").release();
      attached.bounded_semaphore(1, "bs");
    });
    CHECK(child.exit_code() == 0);
    CHECK(v.value() == 15);
    CHECK(m.bounded_semaphore(1, "bs").get_value() == 1);
  }
  CHECK_FALSE(shm_exists(name));
}

TEST_CASE("Manager: unnamed primitives are distinct objects") {
  mpp::Manager m(test_segment("unnamed"), 1 << 20);
  CHECK_FALSE(m.lock() == m.lock());
  auto a = m.event();
  auto b = m.event();
  a.set();
  CHECK_FALSE(b.is_set());
  auto s1 = m.semaphore(0);
  auto s2 = m.semaphore(0);
  s1.release();
  CHECK(s2.get_value() == 0);
}

TEST_CASE("Manager: asking with another kind or type is a TypeMismatch, bad arguments a ValueError") {
  mpp::Manager m(test_segment("mismatch"), 1 << 20);
  m.value<int>("v");
  CHECK_THROWS_AS(m.value<long>("v"), mpp::TypeMismatch);
  CHECK_THROWS_AS(m.array<int>("v", 1), mpp::TypeMismatch);
  m.lock("l");
  CHECK_THROWS_AS(m.rlock("l"), mpp::TypeMismatch);
  CHECK_THROWS_AS(m.event("l"), mpp::TypeMismatch);
  m.semaphore(1, "s");
  CHECK_THROWS_AS(m.bounded_semaphore(1, "s"), mpp::TypeMismatch);
  m.dict<int, int>("d");
  CHECK_THROWS_AS(m.barrier(2, "d"), mpp::TypeMismatch);
  m.array<double>("a", 3);
  CHECK_THROWS_AS(m.array<double>("a", 4), mpp::ValueError);
  CHECK_THROWS_AS(m.semaphore(-1, "neg"), mpp::ValueError);
  CHECK_THROWS_AS(m.barrier(0, "zero"), mpp::ValueError);
  CHECK_THROWS_AS(m.lock(std::string(300, 'x')), mpp::ValueError);
}

TEST_CASE("Manager: a Condition bound to a Manager lock, found again by name") {
  mpp::Manager m(test_segment("cond"), 1 << 20);
  auto lock = m.lock("guard");
  auto cond = m.condition(lock, "ready");
  CHECK(cond.get_lock() == lock);
  auto again = mpp::Manager::attach(m.name()).condition("ready");
  lock.acquire();
  CHECK(again.get_lock().is_owned());  // the same lock, through another mapping
  lock.release();
  CHECK_THROWS_AS(m.condition(m.lock("other"), "ready"), mpp::ValueError);
  CHECK_THROWS_AS(m.condition(mpp::Lock(), "standalone"), mpp::ValueError);

  auto flag = m.value<int>("flag", 0);
  Child waiter([&](int) {
    auto c = mpp::Manager::attach(m.name()).condition("ready");
    auto g = c.guard();
    _exit(c.wait_for([&] { return flag.value() == 1; }, 60s) ? 0 : 1);
  });
  until([&] { return mpp::detail::Access::state(cond)->sleepers.load() == 1; });
  {
    auto g = cond.guard();
    flag.set_value(1);
    cond.notify_all();
  }
  CHECK(waiter.exit_code() == 0);
}

TEST_CASE("Manager: N processes x M increments of a Manager Value are exact, a Barrier lines them up") {
  mpp::Manager m(test_segment("count"), 1 << 20);
  auto v = m.value<std::int64_t>("n", 0);
  auto bar = m.barrier(4, "start");
  auto codes = run_children(4, [&](int) {
    bar.wait();
    for (int i = 0; i < 10000; ++i) v.fetch_add(1);
    bar.wait();
    for (int i = 0; i < 10000; ++i) {
      auto g = v.get_lock().guard();
      v.set_value(v.value() + 1);
    }
  });
  CHECK(all_zero(codes));
  CHECK(v.value() == 80000);
}

TEST_CASE("Manager: a Lock holder SIGKILLed inside a Manager segment is recovered every time") {
  mpp::Manager m(test_segment("kill"), 1 << 20);
  auto lock = m.lock("l");
  for (int round = 0; round < 200; ++round) {
    Child holder([&](int ready) {
      // The handle stays alive while the lock is held: see sync.hpp on unmapping a held lock.
      auto attached = mpp::Manager::attach(m.name()).lock("l");
      attached.acquire();
      mpp::test::signal_ready(ready);
      pause();
    });
    REQUIRE(holder.wait_ready());
    holder.kill_and_reap();
    CHECK(lock.acquire(60s));
    lock.release();
  }
  CHECK(lock.recoveries() == 200);
}
