// The synchronisation primitives across real processes (fork), synchronised with pipes and
// the primitives' own observable state, never with sleeps; and their crash behaviour: holders
// and waiters SIGKILLed inside them.
#include "mpp/sync.hpp"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "mpp/array.hpp"
#include "mpp/errors.hpp"
#include "support/child.hpp"
#include "support/processes.hpp"

using namespace std::chrono_literals;
using mpp::test::Child;
using mpp::test::signal_ready;
using mpp::test::all_zero;
using mpp::test::run_children;
using mpp::test::until;

namespace {

// A child that waits on `barrier` and exits 0 if the wait throws BrokenBarrierError.
void wait_expecting_broken(mpp::Barrier& barrier) {
  try {
    barrier.wait();
  } catch (const mpp::BrokenBarrierError&) {
    _exit(0);
  }
  _exit(30);
}

}  // namespace

// ---- Lock -------------------------------------------------------------------------------

TEST_CASE("Lock: mutual exclusion across processes gives an exact total") {
  mpp::Lock lock;
  mpp::Array<long> cell(1);
  constexpr int kProcs = 4, kIters = 5000;
  auto codes = run_children(kProcs, [&](int) {
    for (int i = 0; i < kIters; ++i) {
      std::lock_guard<mpp::Lock> hold(lock);
      long v = cell.span()[0];  // unsynchronised memory, made safe by the Lock
      cell.span()[0] = v + 1;
    }
  });
  CHECK(all_zero(codes));
  CHECK(cell.span()[0] == kProcs * kIters);
  CHECK(lock.holder() == 0);
  CHECK(lock.recoveries() == 0);
}

TEST_CASE("Lock: acquire with a timeout or without blocking fails while another process holds it") {
  mpp::Lock lock;
  mpp::Event release_it;
  Child holder([&](int ready) {
    lock.acquire();
    signal_ready(ready);
    release_it.wait();
    lock.release();
  });
  REQUIRE(holder.wait_ready());
  CHECK(lock.holder() == holder.pid());
  CHECK_FALSE(lock.acquire(false));
  CHECK_FALSE(lock.acquire(20ms));
  CHECK_FALSE(lock.try_lock());
  CHECK_FALSE(lock.is_owned());
  release_it.set();
  CHECK(lock.acquire(60s));
  CHECK(lock.is_owned());
  lock.release();
  CHECK(holder.exit_code() == 0);
  CHECK(lock.recoveries() == 0);
}

TEST_CASE("Lock: a holder SIGKILLed 200 times is recovered by the next acquirer every time") {
  mpp::Lock lock;
  mpp::Array<int> data{0, 0};  // invariant under the lock: data[0] == data[1]
  constexpr int kRounds = 200;
  for (int round = 0; round < kRounds; ++round) {
    Child child([&](int ready) {
      lock.acquire();
      ++data.span()[0];  // breaks the program's invariant, then dies holding the lock
      signal_ready(ready);
      pause();
    });
    REQUIRE(child.wait_ready());
    child.kill_and_reap();
    auto g = lock.guard();  // must not block: the dead holder's lock is recovered
    CHECK(lock.is_owned());
    data.span()[1] = data.span()[0];  // the program repairs its own data
  }
  CHECK(lock.recoveries() == kRounds);
  CHECK(data.span()[0] == kRounds);
  // And the lock still works between live processes.
  auto codes = run_children(2, [&](int) {
    for (int i = 0; i < 1000; ++i) {
      auto g = lock.guard();
      ++data.span()[0];
      ++data.span()[1];
    }
  });
  CHECK(all_zero(codes));
  CHECK(data.span()[0] == kRounds + 2000);
  CHECK(data.span()[1] == kRounds + 2000);
}

TEST_CASE("Lock: misuse is a clear error, not a deadlock") {
  mpp::Lock lock;
  CHECK_THROWS_AS(lock.release(), mpp::ValueError);
  lock.acquire();
  CHECK_THROWS_AS(lock.acquire(), mpp::ValueError);       // not re-entrant
  CHECK_FALSE(lock.acquire(false));                       // Python: acquire(False) -> False
  lock.release();
  {
    std::unique_lock<mpp::Lock> u(lock, std::defer_lock);
    CHECK(u.try_lock_for(10ms));
    CHECK(lock.is_owned());
  }
  CHECK_FALSE(lock.is_owned());
  CHECK(lock.try_lock_until(std::chrono::system_clock::now() + 10ms));
  lock.unlock();
  mpp::Lock copy = lock;  // handles are values designating the same lock
  CHECK(copy == lock);
  CHECK_FALSE(copy == mpp::Lock());
}

// ---- RLock ------------------------------------------------------------------------------

TEST_CASE("RLock: re-entrant for its holder, exclusive for other processes") {
  mpp::RLock rlock;
  mpp::Event done;
  rlock.acquire();
  rlock.acquire();
  {
    auto g = rlock.guard();
    CHECK(rlock.is_owned());
  }
  Child other([&](int ready) {
    if (rlock.acquire(false)) _exit(3);
    signal_ready(ready);
    rlock.acquire();  // blocks until the parent released both levels
    if (!rlock.is_owned()) _exit(4);
    rlock.release();
    done.set();
  });
  REQUIRE(other.wait_ready());
  rlock.release();
  CHECK_FALSE(done.wait(20ms));  // still held once
  rlock.release();
  CHECK(done.wait(60s));
  CHECK(other.exit_code() == 0);
  CHECK_THROWS_AS(rlock.release(), mpp::ValueError);
}

TEST_CASE("RLock: a holder SIGKILLed at depth 3 is recovered, the next holder starts at depth 1") {
  mpp::RLock rlock;
  for (int round = 0; round < 50; ++round) {
    Child child([&](int ready) {
      rlock.acquire();
      rlock.acquire();
      rlock.acquire();
      signal_ready(ready);
      pause();
    });
    REQUIRE(child.wait_ready());
    child.kill_and_reap();
    rlock.acquire();
    rlock.release();
    CHECK_FALSE(rlock.is_owned());
  }
  CHECK(rlock.recoveries() == 50);
}

// ---- Semaphore --------------------------------------------------------------------------

TEST_CASE("Semaphore: counts, blocks at zero, and wakes a waiting process on release") {
  mpp::Semaphore sem(2);
  CHECK(sem.get_value() == 2);
  CHECK(sem.acquire());
  CHECK(sem.acquire(false));
  CHECK(sem.get_value() == 0);
  CHECK_FALSE(sem.acquire(false));
  CHECK_FALSE(sem.acquire(20ms));
  mpp::Event got;
  Child waiter([&](int) {
    sem.acquire();
    got.set();
  });
  until([&] { return mpp::detail::Access::state(sem)->sleepers.load() == 1; });
  CHECK_FALSE(got.is_set());
  sem.release();
  CHECK(got.wait(60s));
  CHECK(waiter.exit_code() == 0);
  CHECK(sem.get_value() == 0);
  sem.release(2);
  CHECK(sem.get_value() == 2);
  CHECK_THROWS_AS(sem.release(0), mpp::ValueError);
  CHECK_THROWS_AS(mpp::Semaphore(-1), mpp::ValueError);
  mpp::Semaphore zero(0);
  CHECK(zero.get_value() == 0);
}

TEST_CASE("Semaphore: never admits more processes than its value") {
  mpp::Semaphore sem(2);
  mpp::Array<int> inside{0, 0};  // [0]: now inside, [1]: most ever inside
  mpp::Lock count_lock;
  auto codes = run_children(5, [&](int) {
    for (int i = 0; i < 500; ++i) {
      auto g = sem.guard();
      {
        auto c = count_lock.guard();
        int now = ++inside.span()[0];
        if (now > inside.span()[1]) inside.span()[1] = now;
      }
      sched_yield();
      auto c = count_lock.guard();
      --inside.span()[0];
    }
  });
  CHECK(all_zero(codes));
  CHECK(inside.span()[1] <= 2);
  CHECK(inside.span()[1] >= 1);
  CHECK(sem.get_value() == 2);
}

TEST_CASE("BoundedSemaphore: released too often is a ValueError and the value stays") {
  mpp::BoundedSemaphore sem(1);
  CHECK_THROWS_AS(sem.release(), mpp::ValueError);
  CHECK(sem.get_value() == 1);
  sem.acquire();
  sem.release();
  CHECK_THROWS_AS(sem.release(), mpp::ValueError);
  CHECK(sem.get_value() == 1);
  mpp::Semaphore as_base = sem;  // a BoundedSemaphore through a Semaphore handle keeps its bound
  CHECK_THROWS_AS(as_base.release(), mpp::ValueError);
}

TEST_CASE("Semaphore: a waiter SIGKILLed inside acquire() does not break it for the others") {
  mpp::Semaphore sem(0);
  for (int round = 0; round < 20; ++round) {
    Child victim([&](int) { sem.acquire(); _exit(5); });
    mpp::Event got;
    Child survivor([&](int) {
      sem.acquire();
      got.set();
    });
    until([&] { return mpp::detail::Access::state(sem)->sleepers.load() >= 2; });
    victim.kill_and_reap();
    sem.release();
    CHECK(got.wait(60s));
    CHECK(survivor.exit_code() == 0);
    CHECK(sem.get_value() == 0);
    // The dead sleeper may stay counted in the hint; the count itself is exact.
    mpp::detail::Access::state(sem)->sleepers.store(0);
  }
}

// ---- Event ------------------------------------------------------------------------------

TEST_CASE("Event: set wakes every waiting process, clear, wait with a timeout") {
  mpp::Event ev;
  CHECK_FALSE(ev.is_set());
  CHECK_FALSE(ev.wait(10ms));
  constexpr int kWaiters = 3;
  mpp::Semaphore woke(0);
  std::vector<std::unique_ptr<Child>> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.push_back(std::make_unique<Child>([&](int) {
      if (!ev.wait()) _exit(6);
      woke.release();
    }));
  }
  until([&] { return mpp::detail::Access::state(ev)->sleepers.load() == kWaiters; });
  ev.set();
  for (int i = 0; i < kWaiters; ++i) CHECK(woke.acquire(60s));
  for (auto& w : waiters) CHECK(w->exit_code() == 0);
  CHECK(ev.is_set());
  CHECK(ev.wait());
  CHECK(ev.wait(0ms));
  ev.clear();
  CHECK_FALSE(ev.is_set());
  CHECK_FALSE(ev.wait(0ms));
}

TEST_CASE("Event: a waiter that sleeps through set() then clear() still returns true") {
  mpp::Event ev;
  for (int round = 0; round < 20; ++round) {
    Child waiter([&](int) { _exit(ev.wait(60s) ? 0 : 7); });
    until([&] { return mpp::detail::Access::state(ev)->sleepers.load() == 1; });
    ev.set();
    ev.clear();
    CHECK(waiter.exit_code() == 0);
  }
}

TEST_CASE("Event: ping-pong between two processes") {
  mpp::Event ping, pong;
  constexpr int kRounds = 2000;
  Child other([&](int) {
    for (int i = 0; i < kRounds; ++i) {
      ping.wait();
      ping.clear();
      pong.set();
    }
  });
  for (int i = 0; i < kRounds; ++i) {
    ping.set();
    REQUIRE(pong.wait(60s));
    pong.clear();
  }
  CHECK(other.exit_code() == 0);
}

TEST_CASE("Event: a waiter SIGKILLed inside wait() does not break it for the others") {
  mpp::Event ev;
  Child victim([&](int) { ev.wait(); _exit(8); });
  Child survivor([&](int) { _exit(ev.wait(60s) ? 0 : 9); });
  until([&] { return mpp::detail::Access::state(ev)->sleepers.load() == 2; });
  victim.kill_and_reap();
  ev.set();
  CHECK(survivor.exit_code() == 0);
  CHECK(ev.is_set());
}

// ---- Condition --------------------------------------------------------------------------

TEST_CASE("Condition: a consumer process waits for a producer's state change") {
  mpp::Condition cond;
  mpp::Array<int> box{0};
  constexpr int kItems = 500;
  // The producer puts 1..kItems one at a time into box[0]; the consumer takes each.
  Child consumer([&](int) {
    for (int expect = 1; expect <= kItems; ++expect) {
      auto g = cond.guard();
      if (!cond.wait_for([&] { return box.span()[0] != 0; }, 60s)) _exit(10);
      if (box.span()[0] != expect) _exit(11);
      box.span()[0] = 0;
      cond.notify_all();
    }
  });
  for (int item = 1; item <= kItems; ++item) {
    auto g = cond.guard();
    REQUIRE(cond.wait_for([&] { return box.span()[0] == 0; }, 60s));
    box.span()[0] = item;
    cond.notify();
  }
  CHECK(consumer.exit_code() == 0);
}

TEST_CASE("Condition: wait releases every level of its RLock and restores them") {
  mpp::RLock rlock;
  mpp::Condition cond(rlock);
  CHECK(cond.get_lock() == rlock);
  mpp::Event entered;
  rlock.acquire();
  rlock.acquire();
  Child notifier([&](int) {
    auto g = cond.guard();  // only possible while the parent waits with both levels released
    entered.set();
    cond.notify();
  });
  CHECK(cond.wait(60s));
  CHECK(entered.is_set());
  CHECK(rlock.is_owned());
  rlock.release();
  CHECK(rlock.is_owned());  // still held once: the depth was restored
  rlock.release();
  CHECK_FALSE(rlock.is_owned());
  CHECK(notifier.exit_code() == 0);
}

TEST_CASE("Condition: over a Lock, timeouts, misuse without the lock") {
  mpp::Lock lock;
  mpp::Condition cond(lock);
  CHECK_THROWS_AS(cond.wait(), mpp::ValueError);
  CHECK_THROWS_AS(cond.notify(), mpp::ValueError);
  CHECK_THROWS_AS(cond.notify_all(), mpp::ValueError);
  auto g = cond.guard();
  CHECK(lock.is_owned());
  CHECK_FALSE(cond.wait(10ms));
  CHECK(lock.is_owned());
  CHECK_FALSE(cond.wait_for([] { return false; }, 10ms));
  CHECK(cond.wait_for([] { return true; }, 0ms));
  cond.notify();  // nobody waits: nothing happens
}

TEST_CASE("Condition: a waiter SIGKILLed inside wait() does not break it for the others") {
  mpp::Condition cond;
  mpp::Array<int> flag{0};
  for (int round = 0; round < 20; ++round) {
    flag.span()[0] = 0;
    Child victim([&](int) {
      auto g = cond.guard();
      cond.wait();
      _exit(12);
    });
    Child survivor([&](int) {
      auto g = cond.guard();
      _exit(cond.wait_for([&] { return flag.span()[0] == 1; }, 60s) ? 0 : 13);
    });
    until([&] { return mpp::detail::Access::state(cond)->sleepers.load() == 2; });
    victim.kill_and_reap();
    {
      auto g = cond.guard();
      flag.span()[0] = 1;
      cond.notify();  // one notification, and the only live waiter gets it
    }
    CHECK(survivor.exit_code() == 0);
    mpp::detail::Access::state(cond)->sleepers.store(
        0);  // the dead waiter stays counted in the hint
  }
}

// ---- Barrier ----------------------------------------------------------------------------

TEST_CASE("Barrier: rounds of processes pass together, with distinct indexes and one action") {
  constexpr int kParties = 4, kRounds = 50;
  mpp::Array<int> actions{0};
  mpp::Array<int> arrived(kRounds);
  mpp::Barrier barrier(kParties, [&] { ++actions.span()[0]; });
  CHECK(barrier.parties() == kParties);
  auto codes = run_children(kParties, [&](int) {
    for (int r = 0; r < kRounds; ++r) {
      arrived.fetch_add(r, 1);
      unsigned index = barrier.wait();
      if (index >= kParties) _exit(20);
      // Everyone of this round arrived before anyone left, and the action ran once per round.
      if (arrived.get(r) != kParties) _exit(21);
      if (actions.get(0) < r + 1) _exit(22);
    }
  });
  CHECK(all_zero(codes));
  CHECK(actions.span()[0] == kRounds);
  CHECK(barrier.n_waiting() == 0);
  CHECK_FALSE(barrier.broken());
}

TEST_CASE("Barrier: indexes of one round are all different") {
  constexpr int kParties = 3;
  mpp::Barrier barrier(kParties);
  mpp::Array<int> used(kParties);
  Child a([&](int) { used.fetch_add(barrier.wait(), 1); });
  Child b([&](int) { used.fetch_add(barrier.wait(), 1); });
  used.fetch_add(barrier.wait(), 1);
  CHECK(a.exit_code() == 0);
  CHECK(b.exit_code() == 0);
  for (int i = 0; i < kParties; ++i) CHECK(used.get(i) == 1);
}

TEST_CASE("Barrier: abort, reset, timeout and a throwing action break it as in Python") {
  mpp::Barrier barrier(2);
  CHECK_THROWS_AS(mpp::Barrier(0), mpp::ValueError);

  SECTION("abort wakes waiters with BrokenBarrierError; reset makes it usable") {
    Child waiter([&](int) { wait_expecting_broken(barrier); });
    until([&] { return barrier.n_waiting() == 1; });
    barrier.abort();
    CHECK(waiter.exit_code() == 0);
    CHECK(barrier.broken());
    CHECK(barrier.n_waiting() == 0);
    CHECK_THROWS_AS(barrier.wait(), mpp::BrokenBarrierError);
    barrier.reset();
    CHECK_FALSE(barrier.broken());
    Child partner([&](int) { barrier.wait(); });
    CHECK(barrier.wait(60s) < 2);
    CHECK(partner.exit_code() == 0);
  }
  SECTION("reset wakes waiters with BrokenBarrierError and leaves it unbroken") {
    Child waiter([&](int) { wait_expecting_broken(barrier); });
    until([&] { return barrier.n_waiting() == 1; });
    barrier.reset();
    CHECK(waiter.exit_code() == 0);
    CHECK_FALSE(barrier.broken());
    Child partner([&](int) { barrier.wait(); });
    barrier.wait();
    CHECK(partner.exit_code() == 0);
  }
  SECTION("a timed-out wait breaks it for everyone") {
    CHECK_THROWS_AS(barrier.wait(10ms), mpp::BrokenBarrierError);
    CHECK(barrier.broken());
    barrier.reset();
    mpp::Barrier with_default(2, {}, std::chrono::milliseconds(10));
    CHECK_THROWS_AS(with_default.wait(), mpp::BrokenBarrierError);
    CHECK(with_default.broken());
  }
  SECTION("an action that throws breaks it; the exception reaches the process that ran it") {
    mpp::Barrier failing(2, [] { throw std::runtime_error("action failed"); });
    Child waiter([&](int) {
      try {
        failing.wait();
      } catch (const mpp::BrokenBarrierError&) {
        _exit(0);
      } catch (const std::runtime_error&) {
        _exit(1);  // it ran the action
      }
      _exit(32);
    });
    int parent_saw = -1;
    try {
      failing.wait();
      parent_saw = 32;
    } catch (const mpp::BrokenBarrierError&) {
      parent_saw = 0;
    } catch (const std::runtime_error&) {
      parent_saw = 1;
    }
    int child_saw = waiter.exit_code();
    CHECK(parent_saw + child_saw == 1);  // exactly one ran the action
    CHECK(failing.broken());
  }
}

TEST_CASE("Barrier: a waiter SIGKILLed inside wait() still counts, the barrier goes on") {
  mpp::Barrier barrier(2);
  for (int round = 0; round < 20; ++round) {
    Child victim([&](int) { barrier.wait(); pause(); });
    until([&] { return barrier.n_waiting() == 1; });
    victim.kill_and_reap();
    CHECK(barrier.n_waiting() == 1);
    CHECK(barrier.wait(60s) == 1);  // the dead arrival was index 0
    CHECK(barrier.n_waiting() == 0);
    Child partner([&](int) { barrier.wait(); });
    barrier.wait(60s);
    CHECK(partner.exit_code() == 0);
    CHECK_FALSE(barrier.broken());
  }
}

TEST_CASE("Barrier: the last arrival SIGKILLed inside its action breaks it instead of hanging the others") {
  mpp::Event in_action;
  mpp::Barrier barrier(2, [&] {
    in_action.set();
    pause();
  });
  for (int round = 0; round < 5; ++round) {
    in_action.clear();
    barrier.reset();
    Child waiter([&](int) { wait_expecting_broken(barrier); });
    until([&] { return barrier.n_waiting() == 1; });
    Child last([&](int) { barrier.wait(); });
    REQUIRE(in_action.wait(60s));
    last.kill_and_reap();
    CHECK(waiter.exit_code() == 0);  // woken by its own recovery check
    CHECK(barrier.broken());
  }
}

// ---- Threads of one process -------------------------------------------------------------
// The primitives serve threads too (locks belong to threads). Built with
// -DMPP_SANITIZE=thread, this is where ThreadSanitizer checks them.

TEST_CASE("Threads: Lock, RLock, Semaphore, Event, Condition and Barrier between threads") {
  mpp::Lock lock;
  mpp::RLock rlock;
  mpp::Semaphore sem(1);
  mpp::Event go;
  mpp::Condition cond;
  mpp::Barrier barrier(4);
  long locked_total = 0, rlocked_total = 0, sem_total = 0;
  int turn = 0;
  constexpr int kThreads = 4, kIters = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      go.wait();
      barrier.wait();
      for (int i = 0; i < kIters; ++i) {
        {
          std::lock_guard<mpp::Lock> g(lock);
          ++locked_total;
        }
        {
          auto g = rlock.guard();
          auto again = rlock.guard();
          ++rlocked_total;
        }
        {
          auto g = sem.guard();
          ++sem_total;
        }
      }
      // Take turns in order through the Condition.
      auto g = cond.guard();
      cond.wait_for([&] { return turn == t; });
      ++turn;
      cond.notify_all();
    });
  }
  go.set();
  for (auto& th : threads) th.join();
  CHECK(locked_total == kThreads * kIters);
  CHECK(rlocked_total == kThreads * kIters);
  CHECK(sem_total == kThreads * kIters);
  CHECK(turn == kThreads);
  CHECK(sem.get_value() == 1);
}
