#include "mpp/detail/robust_mutex.hpp"

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <new>
#include <thread>

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

namespace {

// Writes a lock word as damage would: the mutex's futex word (glibc keeps the holder's tid
// in it, the kernel reads it) names `tid`, with the waiters bit.
void damage_word(RobustMutex& m, unsigned tid) {
  __atomic_store_n(&m.native()->__data.__lock, static_cast<int>(0x80000000u | tid), __ATOMIC_RELEASE);
}

}  // namespace

TEST_CASE("a damaged lock word is a SegmentError, not a wait forever") {
  mpp::test::SharedMapping<Shared> shm;
  SECTION("naming a thread that does not exist") {
    damage_word(shm->m, 0x3ffffff0u);  // above any pid_max
    CHECK_THROWS_AS(shm->m.lock(), mpp::SegmentError);
    // The same damage is known now: the next call fails at once.
    const auto start = mpp::detail::Clock::now();
    CHECK_THROWS_AS(shm->m.lock(), mpp::SegmentError);
    CHECK(mpp::detail::Clock::now() - start < std::chrono::milliseconds(5));
  }
  SECTION("with the waiters bit and no holder") {
    damage_word(shm->m, 0);  // FUTEX_WAITERS alone: glibc waits for a 0 that never comes
    CHECK_THROWS_AS(shm->m.lock(), mpp::SegmentError);
  }
  SECTION("naming a live thread of a process that never took it") {
    damage_word(shm->m, 1);  // init: alive, and not the holder recorded beside the word
    CHECK_THROWS_AS(shm->m.lock(), mpp::SegmentError);
  }
}

// glibc reads the mutex's type from the object on every call; a priority-inheritance type
// over a word naming a thread that does not exist made glibc abort (an assertion on the
// kernel's ESRCH) in a fuzzed segment.
TEST_CASE("a damaged mutex type is a SegmentError, not an abort") {
  mpp::test::SharedMapping<Shared> shm;
  pthread_mutex_t* m = shm->m.native();
  const int kind = m->__data.__kind;
  m->__data.__kind = kind | 32;  // glibc's PTHREAD_MUTEX_PRIO_INHERIT_NP
  damage_word(shm->m, 0x3ffffff0u);
  CHECK_THROWS_AS(shm->m.lock(), mpp::SegmentError);
  CHECK_THROWS_AS(shm->m.try_lock(), mpp::SegmentError);
  CHECK_THROWS_AS(shm->m.lock_until(mpp::detail::Clock::now()), mpp::SegmentError);
  CHECK_THROWS_AS(shm->m.unlock(), mpp::SegmentError);
  m->__data.__kind = kind;
  __atomic_store_n(&m->__data.__lock, 0, __ATOMIC_RELEASE);
  shm->m.lock();
  shm->m.unlock();
}

TEST_CASE("a healthy lock held longer than the damage checks' second is waited for") {
  mpp::test::SharedMapping<Shared> shm;
  int go[2];
  REQUIRE(pipe(go) == 0);
  mpp::test::Child child([&](int ready_fd) {
    shm->m.lock();
    mpp::test::signal_ready(ready_fd);
    char c;
    (void)!read(go[0], &c, 1);  // held until the parent says
    shm->m.unlock();
    _exit(0);
  });
  child.wait_ready();
  // Released after 1.5 s, while the main thread waits: longer than the second after which a
  // word naming another process than the recorded holder is called damaged.
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    (void)!write(go[1], "x", 1);
  });
  CHECK_FALSE(shm->m.lock());
  CHECK(shm->m.holder() == getpid());
  shm->m.unlock();
  releaser.join();
  CHECK(child.exit_code() == 0);
  close(go[0]);
  close(go[1]);
}
