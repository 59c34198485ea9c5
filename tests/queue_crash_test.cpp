// JoinableQueue's count of unfinished tasks after SIGKILLs, proven store by store
// (detail::crash_step precedes every store of put, get, task_done and the repair of a dead
// claim) and in a random kill loop. The contract (docs/crash-guarantees.md):
//   - a producer killed in put() before its publishing store did not put (the claim it left
//     is skipped, never counted); killed after it, it did;
//   - a consumer killed after claiming a message took it: the message is lost and its task
//     stays unfinished until someone calls task_done() for it (as in Python);
//   - task_done() is one compare-and-swap: done or not;
//   - whoever repairs a dead producer's claim, killed anywhere in the repair (and repaired
//     again), leaves that skip counted exactly once.
// After each kill the test settles what it knows is owed and checks that join() returns
// exactly when every published message has had its task_done(): not before (one more
// task_done() is a ValueError), not later (join() returns).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "mpp/errors.hpp"
#include "mpp/queue.hpp"
#include "support/crash_step.hpp"

using namespace std::chrono_literals;
using mpp::test::killed_at_store;

namespace {

using Q = mpp::JoinableQueue<std::string>;

Q make_queue() { return Q(0, std::size_t{4} << 20); }

// Takes every message (repairing what dead processes left in the way).
std::vector<std::string> drain(Q& q) {
  std::vector<std::string> got;
  for (;;) {
    try {
      got.push_back(q.get_nowait());
    } catch (const mpp::Empty&) {
      return got;
    }
  }
}

std::uint64_t tasks_done(Q& q) { return mpp::detail::Access::core(q).state().tasks_done.load(); }

// With `owed` tasks still unfinished (published messages nobody called task_done() for):
// join() must wait while any is owed and return once they are done, and a task_done() beyond
// them must be refused. Leaves the queue with nothing unfinished.
void settle_and_check(Q& q, std::uint64_t owed) {
  if (owed > 0) {
    CHECK_THROWS_AS(q.join(20ms), mpp::TimeoutError);
    for (; owed > 0; --owed) q.task_done();
  }
  CHECK_NOTHROW(q.join(5s));
  CHECK_THROWS_AS(q.task_done(), mpp::ValueError);
  CHECK(q.check().empty());
}

// The queue still works: a message through it, its task done, join() returns.
void check_usable(Q& q, const std::string& item) {
  q.put(item + "-after");
  CHECK(q.get(5s) == item + "-after");
  q.task_done();
  CHECK_NOTHROW(q.join(5s));
  CHECK(q.check().empty());
}

}  // namespace

TEST_CASE("a producer killed before any store of put: its message counts if and only if published") {
  for (bool large : {false, true}) {
    const std::string item = large ? std::string(5000, 'L') : std::string("small");
    long n = 1;
    for (;; ++n) {
      INFO((large ? "heap item" : "inline item") << ", killed before store " << n);
      Q q = make_queue();
      q.put("before");
      const bool killed = killed_at_store(n, [&] { q.put(item); });
      const auto got = drain(q);
      REQUIRE(!got.empty());
      CHECK(got[0] == "before");
      CHECK(got.size() <= 2);
      if (got.size() == 2) CHECK(got[1] == item);
      if (!killed) CHECK(got.size() == 2);
      for (std::size_t i = 0; i < got.size(); ++i) q.task_done();
      settle_and_check(q, 0);
      check_usable(q, item);
      if (!killed) break;
    }
    CHECK(n >= 5);
  }
}

TEST_CASE("a consumer killed before any store of get and task_done: the task it took stays owed") {
  long n = 1;
  for (;; ++n) {
    INFO("killed before store " << n);
    Q q = make_queue();
    q.put("a");
    q.put("b");
    const bool killed = killed_at_store(n, [&] {
      (void)q.get_nowait();
      q.task_done();
    });
    const auto got = drain(q);
    const std::uint64_t child_done = tasks_done(q);
    CHECK(child_done <= 1);
    if (got.size() == 2) {
      CHECK(got == std::vector<std::string>{"a", "b"});  // killed before its claim
      CHECK(child_done == 0);
    } else {
      CHECK(got == std::vector<std::string>{"b"});  // "a" was taken, lost with the consumer
    }
    if (!killed) CHECK(child_done == 1);
    for (std::size_t i = 0; i < got.size(); ++i) q.task_done();
    // Published: 2. Done: the child's (0 or 1) and ours.
    settle_and_check(q, 2 - child_done - got.size());
    check_usable(q, "x");
    if (!killed) break;
  }
  CHECK(n >= 4);
}

TEST_CASE("repairers of a dead producer's claim killed before any store, twice: the skip counts once") {
  // The producer is killed after claiming its slot, before moving tail (its second store):
  // the claim is what the repairers meet.
  long first = 1;
  for (;; ++first) {
    bool first_killed = false;
    long second = 1;
    for (;; ++second) {
      INFO("first repairer killed before store " << first << ", second before store " << second);
      Q q = make_queue();
      REQUIRE(killed_at_store(2, [&] { q.put("lost"); }));
      auto repair = [&] {
        try {
          (void)q.get_nowait();
        } catch (const mpp::Empty&) {
        }
      };
      first_killed = killed_at_store(first, repair);
      const bool second_killed = first_killed && killed_at_store(second, repair);
      const auto got = drain(q);  // finishes whatever repair is left
      CHECK(got.empty());
      CHECK(mpp::detail::Access::core(q).skipped() == 1);
      CHECK(q.qsize() == 0);
      settle_and_check(q, 0);  // the dead put is no task: join() returns at once
      check_usable(q, "y");
      if (!second_killed) break;
    }
    if (!first_killed) break;
  }
  CHECK(first >= 5);
}

TEST_CASE("random kill loop: producers, consumers and repairers killed at random stores, join stays exact") {
  Q q = make_queue();
  std::mt19937_64 rng(20261207);
  std::uint64_t published = 0, kills = 0, skips_seen = 0;
  int id = 0;
  for (int round = 0; round < 400; ++round) {
    INFO("round " << round);
    // A few messages first; sometimes a producer killed inside its claim, for the child to repair.
    const int k = static_cast<int>(rng() % 3);
    for (int i = 0; i < k; ++i) q.put("m" + std::to_string(id++));
    published += static_cast<std::uint64_t>(k);
    if (rng() % 4 == 0) {
      kills += killed_at_store(1 + static_cast<long>(rng() % 4), [&] { q.put("dead" + std::to_string(id)); });
    }
    const std::string mine = "c" + std::to_string(id++) + (rng() % 2 ? std::string(3000, 'h') : std::string());
    const int op = static_cast<int>(rng() % 3);
    const std::uint64_t done_before = tasks_done(q);
    const long at = 1 + static_cast<long>(rng() % 40);
    kills += killed_at_store(at, [&] {
      if (op == 0) {
        q.put(mine);
      } else {
        // One message (op 1) or all of them (op 2), each with its task_done.
        do {
          try {
            (void)q.get_nowait();
          } catch (const mpp::Empty&) {
            break;
          }
          q.task_done();
        } while (op == 2);
      }
    });
    const auto got = drain(q);
    for (const auto& m : got) {
      if (m == mine) ++published;  // the child's put was published
      if (m.rfind("dead", 0) == 0) ++published;  // a killed put that had published
    }
    for (std::size_t i = 0; i < got.size(); ++i) q.task_done();
    const std::uint64_t done = tasks_done(q);
    REQUIRE(done <= published);
    (void)done_before;
    settle_and_check(q, published - done);
    published = tasks_done(q);
    skips_seen = mpp::detail::Access::core(q).skipped();
  }
  WARN(kills << " kills in 400 rounds; " << skips_seen << " producers' claims skipped");
  CHECK(kills > 100);
  CHECK(skips_seen > 0);
  check_usable(q, "z");
}
