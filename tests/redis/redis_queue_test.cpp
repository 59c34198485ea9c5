// mpp::redis::Queue: Python's queue API, batching, many producers and consumers, and
// reliable delivery — a consumer SIGKILLed with a message in flight, a server restarted
// under load.
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <catch2/catch.hpp>
#include <mpp/redis/queue.hpp>
#include <numeric>
#include <random>
#include <set>

#include "redis/redis_support.hpp"
#include "support/child.hpp"

using namespace std::chrono_literals;
using mpp::redis::Connection;
using mpp::redis::Queue;
using mpp::redis::QueueOptions;
using mpp::test::Child;

namespace {

struct Job {
  int id = 0;
  std::string text;
  std::vector<int> data;
  bool operator==(const Job&) const = default;
  template <class A>
  void serialize(A& ar, unsigned) {
    ar & id & text & data;
  }
};

QueueOptions with_timeout(std::chrono::milliseconds vt, std::size_t maxsize = 0) {
  QueueOptions o;
  o.visibility_timeout = vt;
  o.maxsize = maxsize;
  return o;
}

// Reads exactly one int from a pipe (written atomically by a child).
int read_int(int fd) {
  int v;
  ssize_t n;
  do n = read(fd, &v, sizeof v);
  while (n < 0 && errno == EINTR);
  if (n != sizeof v) throw std::runtime_error("short read from a child");
  return v;
}

void write_int(int fd, int v) {
  if (write(fd, &v, sizeof v) != sizeof v) _exit(96);
}

struct Pipe {
  int fd[2];
  Pipe() {
    if (pipe(fd) != 0) throw std::runtime_error("pipe");
  }
  ~Pipe() {
    close(fd[0]);
    close(fd[1]);
  }
};

}  // namespace

TEST_CASE("put and get keep FIFO order, Empty and Full as Python's queue") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  auto conn = std::make_shared<Connection>(url);
  Queue<int> q(conn, mpp::test::unique_name("fifo"), with_timeout(5s, 3));
  q.clear();
  CHECK(q.empty());
  CHECK(q.maxsize() == 3);
  q.put(1);
  q.put(2, 10ms);
  q.put_nowait(3);
  CHECK(q.qsize() == 3);
  CHECK(q.full());
  CHECK_THROWS_AS(q.put_nowait(4), mpp::Full);
  CHECK_THROWS_AS(q.put(4, 20ms), mpp::Full);
  CHECK(q.get() == 1);
  CHECK(q.get(10ms) == 2);
  CHECK(q.get_nowait() == 3);
  CHECK(q.in_flight() == 3);
  CHECK_THROWS_AS(q.get_nowait(), mpp::Empty);
  CHECK_THROWS_AS(q.get(20ms), mpp::Empty);
  CHECK(q.unfinished_tasks() == 3);
  q.task_done();
  q.task_done(2);
  CHECK_THROWS_AS(q.task_done(), mpp::ValueError);
  CHECK(q.unfinished_tasks() == 0);
  q.join();
  q.clear();
}

TEST_CASE("strings, user types and batches") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  auto conn = std::make_shared<Connection>(url);
  Queue<std::string> s(conn, mpp::test::unique_name("str"));
  Queue<Job> j(conn, mpp::test::unique_name("job"));
  s.clear();
  j.clear();
  s.put(std::string("with\0nul", 8));
  s.put("");
  CHECK(s.get() == std::string("with\0nul", 8));
  CHECK(s.get() == "");
  s.task_done(2);

  Job job{7, "seven", {1, 2, 3}};
  j.put(job);
  CHECK(j.get() == job);
  j.task_done();

  std::vector<std::string> many;
  for (int i = 0; i < 2500; ++i) many.push_back("m" + std::to_string(i));
  s.put_many(many);  // three commands, one round trip
  CHECK(s.qsize() == 2500);
  std::vector<std::string> got;
  while (got.size() < many.size()) {
    auto part = s.get_many(1000, 100ms);
    got.insert(got.end(), part.begin(), part.end());
  }
  CHECK(got == many);
  CHECK(s.in_flight() == 2500);
  s.task_done(2500);
  CHECK(s.unfinished_tasks() == 0);
  CHECK_THROWS_AS(s.get_many(10, 10ms), mpp::Empty);
  s.clear();
  j.clear();
}

TEST_CASE("a bounded put waits for room that a consumer makes") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  std::string name = mpp::test::unique_name("bounded");
  Queue<int> q(url, name, with_timeout(5s, 2));
  q.clear();
  q.put_many(std::vector<int>{1, 2});
  CHECK_THROWS_AS(q.put_many(std::vector<int>{3}, 10ms), mpp::Full);
  CHECK_THROWS_AS(q.put_many(std::vector<int>{3, 4, 5}), mpp::ValueError);  // can never fit
  Child consumer([&](int ready) {
    Queue<int> c(url, name);
    mpp::test::signal_ready(ready);
    for (int i = 0; i < 4; ++i) {
      c.get();
      c.task_done();
    }
  });
  REQUIRE(consumer.wait_ready());
  q.put(3);  // waits until the consumer took one
  q.put(4);
  CHECK(consumer.exit_code() == 0);
  CHECK(q.unfinished_tasks() == 0);
  q.clear();
}

TEST_CASE("4 producers and 4 consumers: every message delivered exactly once") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  std::string name = mpp::test::unique_name("many");
  constexpr int producers = 4, consumers = 4, per_producer = 2000;
  Queue<int> q(url, name);
  q.clear();
  Pipe results;
  std::vector<std::unique_ptr<Child>> kids;
  for (int c = 0; c < consumers; ++c) {
    kids.push_back(std::make_unique<Child>([&](int) {
      Queue<int> in(url, name);
      for (;;) {
        auto batch = in.get_many(50);
        int pills = 0;
        for (int v : batch) {
          if (v < 0) {
            ++pills;
          } else {
            write_int(results.fd[1], v);
          }
        }
        // One stop message per consumer: pass on the ones meant for the others.
        for (int i = 1; i < pills; ++i) in.put(-1);
        in.task_done(batch.size());
        if (pills > 0) return;
      }
    }));
  }
  for (int p = 0; p < producers; ++p) {
    kids.push_back(std::make_unique<Child>([&, p](int) {
      Queue<int> out(url, name);
      std::vector<int> part;
      for (int i = 0; i < per_producer; ++i) {
        part.push_back(p * per_producer + i);
        if (part.size() == 100 || i % 7 == 0) {
          out.put_many(part);
          part.clear();
        }
      }
      out.put_many(part);
    }));
  }
  std::vector<int> seen(producers * per_producer, 0);
  for (int i = 0; i < producers * per_producer; ++i) ++seen.at(read_int(results.fd[0]));
  for (int c = 0; c < consumers; ++c) q.put(-1);
  for (auto& k : kids) CHECK(k->exit_code() == 0);
  CHECK(std::count(seen.begin(), seen.end(), 1) == producers * per_producer);
  CHECK(q.unfinished_tasks() == 0);
  q.clear();
}

TEST_CASE("a consumer SIGKILLed with a message in flight: redelivered exactly once") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  std::string name = mpp::test::unique_name("crash");
  const auto vt = 1s;
  Queue<int> q(url, name, with_timeout(vt));
  Queue<int> results(url, name + ":results");
  q.clear();
  results.clear();
  for (int round = 0; round < 3; ++round) {
    const int message = 1000 + round;
    q.put(message);
    // The victim takes the message and is killed before it acknowledges it.
    Pipe got;
    Child victim([&](int) {
      Queue<int> in(url, name, with_timeout(vt));
      write_int(got.fd[1], in.get());
      pause();
    });
    REQUIRE(read_int(got.fd[0]) == message);
    victim.kill_and_reap();
    CHECK(q.qsize() == 0);
    CHECK(q.unfinished_tasks() == 1);  // in the dead consumer's processing list
    // Two healthy consumers report every message they get on `results`, then ack it.
    std::vector<std::unique_ptr<Child>> healthy;
    for (int c = 0; c < 2; ++c) {
      healthy.push_back(std::make_unique<Child>([&](int) {
        Queue<int> in(url, name, with_timeout(vt));
        Queue<int> out(url, name + ":results");
        for (;;) {
          int v = in.get();
          if (v >= 0) out.put(v);
          in.task_done();
          if (v < 0) return;
        }
      }));
    }
    CHECK(results.get(30s) == message);  // after the victim's lease expired
    results.task_done();
    // Nothing is waiting or in flight anywhere: every delivery there was has reported.
    q.join();
    CHECK(results.qsize() == 0);  // so it was delivered exactly once more
    CHECK(q.reap() == 0);
    for (int c = 0; c < 2; ++c) q.put(-1);
    for (auto& h : healthy) CHECK(h->exit_code() == 0);
  }
  q.clear();
  results.clear();
}

TEST_CASE("Redis restarted under load: clients recover, nothing acknowledged is lost") {
  if (!mpp::test::have_redis_server()) return;
  // Persistence that keeps every acknowledged write across a crash of the server process:
  // Redis write()s its append-only file before it replies, whatever the fsync policy (only
  // a crash of the machine needs appendfsync always, which costs a disk flush per write).
  mpp::test::RedisServer server({"--appendonly", "yes", "--appendfsync", "no"});
  const std::string url = server.url(), name = "restart";
  constexpr int total = 3000;
  Pipe results;
  // Retries a call until the server answers; each failure was a dropped connection.
  auto retry = [](auto&& f) {
    for (;;) {
      try {
        return f();
      } catch (const mpp::ConnectionError&) {
      } catch (const mpp::TimeoutError&) {
      }
    }
  };
  std::vector<std::unique_ptr<Child>> consumers;
  for (int c = 0; c < 2; ++c) {
    consumers.push_back(std::make_unique<Child>([&](int) {
      Queue<int> in(url, name, with_timeout(1s));
      for (;;) {
        int v = retry([&] { return in.get(); });
        if (v >= 0) write_int(results.fd[1], v);
        retry([&] {
          in.task_done();
          return 0;
        });
        if (v < 0) return;
      }
    }));
  }
  Child producer([&](int ready) {
    Queue<int> out(url, name);
    for (int i = 0; i < total; ++i) {
      // put() returned = acknowledged. A put that failed is repeated: it may then be there
      // twice (at-least-once), never zero times.
      retry([&] {
        out.put(i);
        return 0;
      });
      if (i == total / 3) mpp::test::signal_ready(ready);
    }
  });
  REQUIRE(producer.wait_ready());
  server.restart();  // SIGKILL, then start again from its append-only file
  CHECK(producer.exit_code() == 0);
  std::vector<int> seen(total, 0);
  int distinct = 0;
  while (distinct < total) {
    int v = read_int(results.fd[0]);
    if (seen.at(v)++ == 0) ++distinct;
  }
  Queue<int> q(url, name);
  for (int c = 0; c < 2; ++c) retry([&] {
      q.put(-1);
      return 0;
    });
  for (auto& c : consumers) CHECK(c->exit_code() == 0);
  CHECK(std::count(seen.begin(), seen.end(), 0) == 0);
  // Redelivery is rare (a put or get cut by the restart) and bounded.
  CHECK(std::accumulate(seen.begin(), seen.end(), 0) < total + 10);
}

TEST_CASE("task_done(n) removes exactly its messages, in order or not") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  auto conn = std::make_shared<Connection>(url);
  std::string name = mpp::test::unique_name("ack");
  Queue<std::string> q(conn, name);
  q.clear();
  q.put_many(std::vector<std::string>{"a", "b", "c", "d"});
  CHECK(q.get_many(3) == std::vector<std::string>{"a", "b", "c"});
  auto keys = conn->command({"KEYS", name + ":processing:*"});
  REQUIRE(keys.size() == 1);
  std::string proc(keys[0].str());
  // Something else at the tail of the processing list: the fast path (LTRIM) must not run.
  conn->command({"RPUSH", proc, "stranger"});
  q.task_done(2);
  auto left = conn->command({"LRANGE", proc, "0", "-1"});
  REQUIRE(left.size() == 2);
  CHECK(left[0].str() == "c");
  CHECK(left[1].str() == "stranger");
  conn->command({"LREM", proc, "0", "stranger"});
  CHECK(q.get() == "d");
  q.task_done(2);  // c and d, now the whole list
  CHECK(conn->command({"LLEN", proc}).integer() == 0);
  CHECK(q.unfinished_tasks() == 0);
  q.clear();
}

TEST_CASE("consumers SIGKILLed 30 times mid-stream: every message delivered, none lost") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  std::string name = mpp::test::unique_name("killloop");
  constexpr int total = 600, kills = 30, consumers = 3;
  const auto vt = 1s;
  Queue<int> q(url, name, with_timeout(vt));
  q.clear();
  std::vector<int> all(total);
  std::iota(all.begin(), all.end(), 0);
  q.put_many(all);
  Pipe results;
  auto spawn = [&] {
    return std::make_unique<Child>([&](int) {
      Queue<int> in(url, name, with_timeout(vt));
      for (;;) {
        int v = in.get();
        if (v >= 0) write_int(results.fd[1], v);
        in.task_done();
        if (v < 0) return;
      }
    });
  };
  std::vector<std::unique_ptr<Child>> pool;
  for (int c = 0; c < consumers; ++c) pool.push_back(spawn());
  std::mt19937 rng(42);
  std::vector<int> seen(total, 0);
  int distinct = 0, received = 0, killed = 0;
  while (distinct < total) {
    int v = read_int(results.fd[0]);
    ++received;
    if (seen.at(v)++ == 0) ++distinct;
    if (received % 15 == 0 && killed < kills) {
      // Anywhere: inside get, between the report and task_done, inside task_done.
      auto& victim = pool[rng() % consumers];
      victim->kill_and_reap();
      victim = spawn();
      ++killed;
    }
  }
  q.join();  // the last victims' messages are back and done (the live consumers reaped them)
  for (int c = 0; c < consumers; ++c) q.put(-1);
  for (auto& c : pool) CHECK(c->exit_code() == 0);
  // Count the redeliveries reported after the last new message.
  fcntl(results.fd[0], F_SETFL, O_NONBLOCK);
  int extra;
  while (read(results.fd[0], &extra, sizeof extra) == sizeof extra) ++seen.at(extra), ++received;
  CHECK(killed == kills);
  CHECK(std::count(seen.begin(), seen.end(), 0) == 0);
  // A consumer holds one message at a time, so each kill can cause at most one redelivery.
  CHECK(received - total <= killed);
  CHECK(q.unfinished_tasks() == 0);
  q.clear();
}
