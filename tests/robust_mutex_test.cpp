#include "mpp/detail/robust_mutex.hpp"

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <new>

#include "mpp/errors.hpp"
#include "support/child.hpp"

using mpp::detail::RobustMutex;

namespace {

struct Shared {
  RobustMutex m;
  int a = 0;
  int b = 0;  // invariant: a == b outside the lock
};

}  // namespace

TEST_CASE("a lock whose holder was SIGKILLed is recovered by the next locker, every time") {
  mpp::test::SharedMapping<Shared> shm;
  Shared& s = *shm;
  constexpr int kRounds = 200;
  int recovered_total = 0;
  for (int round = 0; round < kRounds; ++round) {
    mpp::test::Child child([&](int ready_fd) {
      s.m.lock();
      ++s.a;  // the invariant is broken while held...
      mpp::test::signal_ready(ready_fd);
      pause();  // ...and the holder dies here
    });
    child.wait_ready();
    child.kill_and_reap();
    bool recovered = s.m.lock([&] { s.b = s.a; });
    CHECK(recovered);
    recovered_total += recovered;
    CHECK(s.a == s.b);
    CHECK(s.m.holder() == getpid());
    s.m.unlock();
    CHECK(s.m.holder() == 0);
  }
  CHECK(recovered_total == kRounds);
  CHECK(s.m.recoveries() == kRounds);
}

TEST_CASE("lock_until times out on a lock held by a live process") {
  mpp::test::SharedMapping<Shared> shm;
  mpp::test::Child child([&](int ready_fd) {
    shm->m.lock();
    mpp::test::signal_ready(ready_fd);
    pause();
  });
  child.wait_ready();
  CHECK(shm->m.holder() == child.pid());
  auto r = shm->m.lock_until(mpp::detail::Clock::now() + std::chrono::milliseconds(20));
  CHECK_FALSE(r.has_value());
  CHECK_FALSE(shm->m.try_lock().has_value());
  child.kill_and_reap();
  auto r2 = shm->m.try_lock();
  REQUIRE(r2.has_value());
  CHECK(*r2 == true);
  shm->m.unlock();
}

TEST_CASE("misuse is an error, not undefined behaviour") {
  mpp::test::SharedMapping<Shared> shm;
  CHECK_THROWS_AS(shm->m.unlock(), mpp::ValueError);
  shm->m.lock();
  CHECK_THROWS_AS(shm->m.lock(), mpp::ValueError);
  shm->m.unlock();
}
