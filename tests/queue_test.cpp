#include "mpp/queue.hpp"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "mpp/detail/process_identity.hpp"
#include "mpp/manager.hpp"
#include "support/child.hpp"

using namespace std::chrono_literals;
using mpp::test::Child;

TEST_CASE("a Queue is FIFO for values of any codec type") {
  mpp::Queue<std::vector<int>> q;
  CHECK(q.empty());
  q.put({1, 2, 3, 4});
  q.put({});
  q.put(std::vector<int>(1000, 7));
  CHECK(q.qsize() == 3);
  CHECK_FALSE(q.full());
  CHECK(q.get() == std::vector<int>{1, 2, 3, 4});
  CHECK(q.get().empty());
  CHECK(q.get() == std::vector<int>(1000, 7));
  CHECK(q.empty());

  mpp::Queue<std::string> s(0, 8 << 20);
  for (int i = 0; i < 5000; ++i) s.put(std::string(static_cast<std::size_t>(i % 300), char('a' + i % 26)));
  for (int i = 0; i < 5000; ++i) {
    REQUIRE(s.get() == std::string(static_cast<std::size_t>(i % 300), char('a' + i % 26)));
  }
  CHECK(s.check().empty());
}

TEST_CASE("maxsize, Full, Empty and timeouts behave as Python's") {
  mpp::Queue<int> q(2);
  CHECK(q.maxsize() == 2);
  CHECK_THROWS_AS(q.get_nowait(), mpp::Empty);
  auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(q.get(20ms), mpp::Empty);
  CHECK(std::chrono::steady_clock::now() - t0 >= 20ms);
  q.put(1);
  q.put_nowait(2);
  CHECK(q.full());
  CHECK_THROWS_AS(q.put_nowait(3), mpp::Full);
  t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(q.put(3, 20ms), mpp::Full);
  CHECK(std::chrono::steady_clock::now() - t0 >= 20ms);
  CHECK(q.get_nowait() == 1);
  q.put(3, 1s);
  CHECK(q.get(1s) == 2);
  CHECK(q.get() == 3);
  CHECK(q.check().empty());
}

TEST_CASE("close() stops this handle only") {
  mpp::Queue<int> q;
  mpp::Queue<int> other = q;
  q.put(1);
  q.close();
  CHECK_THROWS_AS(q.put(2), mpp::ValueError);
  CHECK_THROWS_AS(q.get(), mpp::ValueError);
  CHECK(other.get() == 1);
}

TEST_CASE("a blocked get wakes when a child puts, a blocked put when a child gets") {
  mpp::Queue<int> q(1);
  mpp::Queue<int> back(1);
  Child child([&](int) {
    for (int i = 0; i < 1000; ++i) q.put(i);
    back.put(-1);
  });
  for (int i = 0; i < 1000; ++i) REQUIRE(q.get() == i);
  CHECK(back.get() == -1);
  CHECK(child.exit_code() == 0);
}

TEST_CASE("4 producers x 4 consumers x 100k messages: each received exactly once") {
  constexpr int kProducers = 4, kConsumers = 4, kEach = 100'000;
  struct Seen {
    std::array<std::atomic<std::uint8_t>, kProducers * kEach> count{};
  };
  mpp::test::SharedMapping<Seen> seen;
  mpp::Queue<std::uint64_t> q(0, 8 << 20);
  std::vector<std::unique_ptr<Child>> kids;
  for (int c = 0; c < kConsumers; ++c) {
    kids.push_back(std::make_unique<Child>([&](int) {
      for (;;) {
        std::uint64_t v = q.get();
        if (v == UINT64_MAX) return;
        seen->count[v].fetch_add(1, std::memory_order_relaxed);
      }
    }));
  }
  std::vector<std::unique_ptr<Child>> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.push_back(std::make_unique<Child>([&, p](int) {
      for (int i = 0; i < kEach; ++i) q.put(static_cast<std::uint64_t>(p) * kEach + i);
    }));
  }
  for (auto& p : producers) CHECK(p->exit_code() == 0);
  for (int c = 0; c < kConsumers; ++c) q.put(UINT64_MAX);
  for (auto& k : kids) CHECK(k->exit_code() == 0);
  int wrong = 0;
  for (auto& c : seen->count) wrong += c.load() != 1;
  CHECK(wrong == 0);
  CHECK(q.empty());
  CHECK(q.check().empty());
}

TEST_CASE("large messages go through the heap: a 64 MiB message, and many of 1 MiB") {
  mpp::Queue<std::string> q;  // default capacity: 128 MiB
  std::string big(64u << 20, '\0');
  for (std::size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>(i / 4096 * 7);
  Child child([&](int) {
    q.put(big);
    for (int i = 0; i < 200; ++i) q.put(std::string(1 << 20, static_cast<char>(i)));
  });
  std::string got = q.get();
  CHECK(got == big);
  for (int i = 0; i < 200; ++i) {
    std::string m = q.get();
    REQUIRE(m.size() == (1u << 20));
    REQUIRE(m.front() == static_cast<char>(i));
    REQUIRE(m.back() == static_cast<char>(i));
  }
  CHECK(child.exit_code() == 0);
  CHECK(q.check().empty());
}

TEST_CASE("a message that can never fit is SegmentFull, not a hang") {
  mpp::Queue<std::string> q(0, 1 << 20);
  CHECK_THROWS_AS(q.put(std::string(2 << 20, 'x')), mpp::SegmentFull);
  q.put("still usable");
  CHECK(q.get() == "still usable");
}

TEST_CASE("an undecodable item is a DecodeError and is dropped") {
  mpp::Queue<std::string> raw;
  auto typed = mpp::detail::Access::make<mpp::Queue<std::int64_t>>(mpp::detail::Access::core(raw));
  raw.put("abc");
  raw.put(std::string(8, '\0'));
  CHECK_THROWS_AS(typed.get(), mpp::DecodeError);
  CHECK(typed.get() == 0);
}

TEST_CASE("JoinableQueue: join waits for every task_done, and one too many is a ValueError") {
  mpp::JoinableQueue<int> q;
  CHECK_THROWS_AS(q.task_done(), mpp::ValueError);
  q.join();  // nothing put: returns at once
  for (int i = 0; i < 10; ++i) q.put(i);
  CHECK_THROWS_AS(q.join(10ms), mpp::TimeoutError);
  Child worker([&](int) {
    for (int i = 0; i < 10; ++i) {
      (void)q.get();
      q.task_done();
    }
  });
  q.join();
  CHECK(q.empty());
  CHECK(worker.exit_code() == 0);
  CHECK_THROWS_AS(q.task_done(), mpp::ValueError);
}

TEST_CASE("SimpleQueue: put, get, empty, close") {
  mpp::SimpleQueue<std::string> q;
  CHECK(q.empty());
  Child child([&](int) { q.put("from the child"); });
  CHECK(q.get() == "from the child");
  CHECK(q.empty());
  CHECK(child.exit_code() == 0);
  q.close();
  CHECK_THROWS_AS(q.put("x"), mpp::ValueError);
}

namespace {

// A crash-test message: its (round, seq) identity, then one of 16 payload patterns chosen by
// seq, from 28 bytes (inline in a slot) to 70 kB (heap blocks are killed too). Big payloads
// make the copies inside claimed slots the larger part of each child's time, so that many
// kills land between a claim and its release.
struct Made {
  std::uint32_t round, seq;
};

const std::array<std::string, 16>& patterns() {
  static const std::array<std::string, 16> p = [] {
    std::array<std::string, 16> out;
    for (std::size_t k = 0; k < out.size(); ++k) {
      // Patterns 0, 1 and 2 fit in a slot (up to 104 bytes): the rest go to heap blocks.
      std::size_t n = k < 3 ? 20 + k * 30 : k == 5 ? 70'000 : 100 + k * 2'000;
      out[k].resize(sizeof(Made) + n);
      for (std::size_t i = 0; i < n; ++i) out[k][sizeof(Made) + i] = static_cast<char>(k * 31 + i % 251);
    }
    return out;
  }();
  return p;
}

// Builds the message in `buf` (which keeps its capacity between calls).
void make_message(std::string& buf, std::uint32_t round, std::uint32_t seq) {
  buf = patterns()[seq % 16];
  Made id{round, seq};
  std::memcpy(buf.data(), &id, sizeof id);
}

std::string make_message(std::uint32_t round, std::uint32_t seq) {
  std::string m;
  make_message(m, round, seq);
  return m;
}

// The message's identity if it is whole, else nothing.
std::optional<Made> check_message(const std::string& m) {
  if (m.size() < sizeof(Made)) return std::nullopt;
  Made id;
  std::memcpy(&id, m.data(), sizeof id);
  const std::string& p = patterns()[id.seq % 16];
  if (m.size() != p.size() || std::memcmp(m.data() + sizeof id, p.data() + sizeof id, p.size() - sizeof id) != 0) {
    return std::nullopt;
  }
  return id;
}

}  // namespace

TEST_CASE("crash loop: 200+ SIGKILLs of producers and consumers inside put and get") {
  constexpr int kRounds = 110, kPerRound = 4096;
  struct Shared {
    std::atomic<std::uint64_t> progress{0};
    std::atomic<bool> producer_done{false};  // this round's producer put all it had
    std::atomic<int> torn{0};
    std::array<std::atomic<std::uint8_t>, kRounds * kPerRound> seen{};
    std::array<std::atomic<std::uint32_t>, kRounds> put_done{};  // puts that returned, per round
  };
  mpp::test::SharedMapping<Shared> sh;
  mpp::Queue<std::string> q(64, 16 << 20);
  auto consume = [&](const std::string& m) {
    auto id = check_message(m);
    if (!id || id->round >= kRounds || id->seq >= kPerRound) {
      sh->torn.fetch_add(1);
      return;
    }
    sh->seen[id->round * kPerRound + id->seq].fetch_add(1);
  };
  std::mt19937 rng(42);
  int producer_kills = 0, consumer_kills = 0;
  for (std::uint32_t round = 0; round < kRounds; ++round) {
    sh->producer_done.store(false);
    Child producer([&, round](int) {
      std::string m;
      for (std::uint32_t seq = 0; seq < kPerRound; ++seq) {
        make_message(m, round, seq);
        q.put(m);
        sh->put_done[round].store(seq + 1);
        sh->progress.fetch_add(1);
      }
      sh->producer_done.store(true);
      pause();
    });
    Child consumer([&](int) {
      for (;;) {
        consume(q.get());
        sh->progress.fetch_add(1);
      }
    });
    // Kill each at a random point of its run (no sleeps: wait for a random amount of
    // progress), the first chosen at random.
    bool producer_first = rng() % 2 == 0;
    for (int k = 0; k < 2; ++k) {
      bool kill_producer = (k == 0) == producer_first;
      std::uint64_t target = sh->progress.load() + 1 + rng() % 40;
      auto stuck_after = std::chrono::steady_clock::now() + 20s;
      while (sh->progress.load() < target) {
        // With its partner dead, a consumer stops at an empty queue and a producer at a
        // full one: kill it there, asleep inside get or put.
        if (k == 1 && (kill_producer ? q.full() : q.empty())) break;
        // A slow parent (a loaded machine) may find the round's work all done.
        if (sh->producer_done.load() && q.empty()) break;
        if (std::chrono::steady_clock::now() > stuck_after) {
          FAIL("no progress in round " << round << " kill " << k << ": qsize " << q.qsize()
                                       << ", check: '" << q.check() << "'");
        }
        sched_yield();
      }
      (kill_producer ? producer : consumer).kill_and_reap();
      ++(kill_producer ? producer_kills : consumer_kills);
    }
  }
  const std::uint64_t skipped = mpp::detail::Access::core(q).skipped();
  INFO("producer kills " << producer_kills << ", consumer kills " << consumer_kills
                         << ", producers' claims skipped " << skipped);
  INFO(q.check());
  CHECK(q.check().empty());
  // Drain what is left: every message whole, none twice. A claim the last killed producer
  // left at head is counted by qsize() until a get meets it: get_nowait() then skips it and
  // reports Empty, after which the queue is empty.
  for (;;) {
    try {
      consume(q.get_nowait());
    } catch (const mpp::Empty&) {
      break;
    }
  }
  CHECK(q.empty());
  CHECK(sh->torn.load() == 0);
  int dup = 0, got = 0;
  for (auto& c : sh->seen) {
    dup += c.load() > 1;
    got += c.load() == 1;
  }
  CHECK(dup == 0);
  CHECK(got > 0);
  // A message whose put returned and that nobody saw was taken by a consumer killed inside
  // get (between its claim and handing the message over): at most one per consumer kill.
  int lost = 0;
  for (std::uint32_t round = 0; round < kRounds; ++round) {
    for (std::uint32_t seq = 0; seq < sh->put_done[round].load(); ++seq) {
      lost += sh->seen[round * kPerRound + seq].load() == 0;
    }
  }
  INFO("messages lost with a killed consumer: " << lost);
  CHECK(lost <= consumer_kills);
  CHECK(skipped <= static_cast<std::uint64_t>(producer_kills));
  // The loop did what it is named after: some kills landed inside a claim window.
  CHECK(lost + skipped > 0);
  // Still fully usable, with heap messages too.
  for (std::uint32_t i = 0; i < 64; ++i) q.put_nowait(make_message(0, i));
  CHECK_THROWS_AS(q.put_nowait("x"), mpp::Full);
  for (std::uint32_t i = 0; i < 64; ++i) CHECK(q.get_nowait() == make_message(0, i));
  CHECK(q.check().empty());
}

TEST_CASE("named queues live in a Manager: found by name from an attached process, type-checked") {
  std::string name = "mpp-queue-test-" + std::to_string(getpid());
  {
    mpp::Manager m(name, 8 << 20);
    auto q = m.queue<std::string>("jobs", 100);
    auto done = m.joinable_queue<int>("done");
    auto log = m.simple_queue<std::string>("log");
    Child worker([&](int) {
      // Attach by name, as an unrelated process would.
      auto m2 = mpp::Manager::attach(name);
      auto jobs = m2.queue<std::string>("jobs");
      auto d = m2.joinable_queue<int>("done");
      for (;;) {
        std::string job = jobs.get();
        if (job == "stop") break;
        d.put(static_cast<int>(job.size()));
      }
      m2.simple_queue<std::string>("log").put("worker done");
    });
    q.put("a");
    q.put(std::string(100'000, 'b'));  // a heap message in the Manager's segment
    q.put("stop");
    CHECK(done.get() == 1);
    done.task_done();
    CHECK(done.get() == 100'000);
    done.task_done();
    done.join();
    CHECK(log.get() == "worker done");
    CHECK(worker.exit_code() == 0);
    CHECK(q.maxsize() == 100);
    CHECK(m.queue<std::string>("jobs").maxsize() == 100);  // the same queue
    CHECK_THROWS_AS(m.queue<int>("jobs"), mpp::TypeMismatch);
    CHECK_THROWS_AS(m.joinable_queue<std::string>("jobs"), mpp::TypeMismatch);
    CHECK_THROWS_AS(m.queue<int>("bad", 0, 3000), mpp::ValueError);
    CHECK(q.check().empty());
  }
  CHECK(access(("/dev/shm/" + name).c_str(), F_OK) != 0);  // nothing left behind
}

namespace {
int crash_fd = -1;
mpp::detail::QueueCrashPoint crash_at{};

// Runs `body` in a child that stops at crash point `where`, and kills it there.
void kill_at_crash_point(mpp::detail::QueueCrashPoint where, const std::function<void()>& body) {
  using P = mpp::detail::QueueCrashPoint;
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  Child child([&](int) {
    crash_fd = fds[1];
    crash_at = where;
    mpp::detail::queue_crash_hook = [](P p) {
      if (p != crash_at) return;
      char x = 1;
      (void)!write(crash_fd, &x, 1);
      for (;;) pause();
    };
    body();
  });
  char x;
  REQUIRE(read(fds[0], &x, 1) == 1);  // the child is inside the window: kill it there
  child.kill_and_reap();
  close(fds[0]);
  close(fds[1]);
}
}  // namespace

TEST_CASE("SIGKILL inside each claim window: the queue stays valid, the item is lost whole") {
  using P = mpp::detail::QueueCrashPoint;
  mpp::JoinableQueue<std::string> q(4, 16 << 20);
  std::uint64_t lost_gets = 0;
  for (P where : {P::put_claimed, P::put_filling, P::get_claimed, P::get_consumed, P::get_released}) {
    for (bool large : {false, true}) {
      INFO("crash point " << static_cast<int>(where) << (large ? ", heap item" : ", inline item"));
      const std::string item = large ? std::string(5000, 'L') : std::string("small");
      const bool in_put = where == P::put_claimed || where == P::put_filling;
      if (!in_put) q.put(item);
      kill_at_crash_point(where, [&] {
        if (in_put) {
          q.put(item);
        } else {
          (void)q.get();
        }
      });
      CHECK(q.check().empty());
      if (where == P::put_claimed) {
        // A consumer meets the dead claim first: it moves tail past it (which the producer
        // never did), skips it and steps head past it.
        CHECK_THROWS_AS(q.get_nowait(), mpp::Empty);
        const auto& st = mpp::detail::Access::core(q).state();
        CHECK(st.head.load() == st.tail.load());
        CHECK(q.qsize() == 0);
        CHECK(q.check().empty());
      }
      if (!in_put) ++lost_gets;
      // The dead claim is in the way of the next put or get, which repairs it.
      q.put(item + "after");
      CHECK(q.get(10s) == item + "after");
      CHECK(q.empty());
      CHECK(q.check().empty());
      // A put that died is not a put; a get that died took its item (its task is ours).
      q.task_done();
      for (; lost_gets > 0; --lost_gets) q.task_done();
      q.join(10s);
      CHECK_THROWS_AS(q.task_done(), mpp::ValueError);
      // Fill the ring past the repaired slot: everything still flows.
      for (int i = 0; i < 4; ++i) q.put_nowait(std::to_string(i));
      CHECK_THROWS_AS(q.put_nowait("x"), mpp::Full);
      for (int i = 0; i < 4; ++i) CHECK(q.get_nowait() == std::to_string(i));
      for (int i = 0; i < 4; ++i) q.task_done();
    }
  }
}

TEST_CASE("a consumer killed while repairing a dead producer's claim: still valid, repaired again") {
  using P = mpp::detail::QueueCrashPoint;
  mpp::Queue<std::string> q(4, 16 << 20);
  kill_at_crash_point(P::put_claimed, [&] { q.put("lost"); });
  CHECK(q.check().empty());
  kill_at_crash_point(P::repair_taken, [&] { (void)q.get_nowait(); });
  INFO(q.check());
  CHECK(q.check().empty());  // tail still at the claim, now a dead reading claim
  CHECK_THROWS_AS(q.get_nowait(), mpp::Empty);  // steps head past it
  CHECK(q.check().empty());
  q.put("after");
  CHECK(q.check().empty());
  CHECK(q.get_nowait() == "after");
  for (int i = 0; i < 4; ++i) q.put_nowait(std::to_string(i));  // around the ring, past it
  for (int i = 0; i < 4; ++i) CHECK(q.get_nowait() == std::to_string(i));
  CHECK(q.check().empty());
  // The dead repairer's takeover is finished by the next repairer: counted once.
  CHECK(mpp::detail::Access::core(q).skipped() == 1);
}

TEST_CASE("get_view lends the item in place and takes it") {
  mpp::Queue<std::string> q;
  q.put("hello");
  q.put(std::string(300'000, 'z'));
  q.put("third");
  CHECK(q.get_view([](std::string_view v) { return v.size(); }) == 5u);
  std::size_t zs = 0;
  q.get_view([&](std::string_view v) { zs = static_cast<std::size_t>(std::count(v.begin(), v.end(), 'z')); });
  CHECK(zs == 300'000u);
  CHECK_THROWS_AS(q.get_view([](std::string_view) -> int { throw std::runtime_error("boom"); }),
                  std::runtime_error);
  CHECK(q.empty());  // a throwing callback drops its item
  CHECK_THROWS_AS(q.get_view_nowait([](std::string_view) {}), mpp::Empty);
  CHECK_THROWS_AS(q.get_view([](std::string_view) {}, 10ms), mpp::Empty);

  struct alignas(32) Wide {
    double v[4];
  };
  mpp::Queue<Wide> w;
  w.put(Wide{{1, 2, 3, 4}});
  CHECK(w.get_view([](const Wide& x) {
    return reinterpret_cast<std::uintptr_t>(&x) % alignof(Wide) == 0 ? x.v[3] : -1.0;
  }) == 4.0);
  mpp::Queue<std::vector<int>> v;
  v.put({1, 2, 3});
  CHECK(v.get_view([](const std::vector<int>& x) { return x.size(); }) == 3u);
  CHECK(q.check().empty());
}

TEST_CASE("a claim whose pid now names another live process is repaired as a dead one's") {
  mpp::Queue<std::string> q(4, 16 << 20);
  Child other([](int ready) {  // a live process whose pid the dead claimer "had"
    mpp::test::signal_ready(ready);
    for (;;) pause();
  });
  REQUIRE(other.wait_ready());
  // The state word a claimer with other's pid but another start time left at position 0:
  // sequence 0 (being written), owner = pid | start ticks (low 14 bits) << 22.
  const std::uint64_t ticks = mpp::detail::process_start_ticks(other.pid());
  REQUIRE(ticks != 0);
  const std::uint64_t stale = static_cast<std::uint64_t>(other.pid()) | (((ticks + 1) & 0x3fff) << 22);
  auto& st = mpp::detail::Access::core(q).state();
  auto* ring = mpp::detail::Access::core(q).segment().at<mpp::detail::QueueSlot>(st.ring_offset);
  ring[0].state.store(stale);
  st.tail.store(1);  // its producer had moved tail on
  q.put_nowait("x");
  CHECK(q.get_nowait() == "x");  // the stale claim was skipped, not waited for
  CHECK(mpp::detail::Access::core(q).skipped() == 1);
  CHECK(q.check().empty());
}
