// Handles of a Manager's objects as task arguments and messages: each kind goes through
// Pool::apply_async, a Queue and a Pipe, and is used on the other side.
#include "mpp/handle_codec.hpp"

#include <catch2/catch.hpp>
#include <stdexcept>
#include <tuple>
#include <string>
#include <vector>

#include "mpp/manager.hpp"
#include "mpp/pipe.hpp"
#include "mpp/pool.hpp"
#include "mpp/process.hpp"
#include "mpp/queue.hpp"

namespace {

using Counts = mpp::Dict<std::string, int>;
using Log = mpp::List<std::string>;
using Jobs = mpp::Queue<int>;
using Total = mpp::Value<long>;

// What a receiver does with each handle: a change the parent can see.
int use_dict(Counts d, const std::string& who) {
  d[who] += 1;
  return static_cast<int>(d.size());
}
int use_list(Log l, const std::string& who) {
  l.append(who);
  return static_cast<int>(l.size());
}
int use_queue(Jobs q, const std::string& who) {
  q.put(static_cast<int>(who.size()));
  return 1;
}
int use_value(Total v, const std::string& who) {
  v.set_value(v.value() + static_cast<long>(who.size()));
  return 1;
}
// 1 when the lock was free (it is taken and given back), 0 when someone holds it.
int use_lock(mpp::Lock l, const std::string&) {
  if (!l.acquire(false)) return 0;
  l.release();
  return 1;
}

}  // namespace

TEST_CASE("Dict, List, Queue, Value and Lock handles travel through apply_async, Queue and Pipe") {
  mpp::Manager m(4 << 20);
  auto d = m.dict<std::string, int>("counts");
  auto l = m.list<std::string>("log");
  auto q = m.queue<int>("jobs");
  auto v = m.value<long>("total", 0);
  auto lock = m.lock();

  SECTION("as Pool task arguments") {
    mpp::Pool pool(2);
    CHECK(pool.apply_async(use_dict, d, std::string("pool")).get() == 1);
    CHECK(pool.apply_async(use_list, l, std::string("pool")).get() == 1);
    CHECK(pool.apply_async(use_queue, q, std::string("pool")).get() == 1);
    CHECK(pool.apply_async(use_value, v, std::string("pool")).get() == 1);
    lock.acquire();  // the worker's handle is the same lock: it finds it held
    CHECK(pool.apply_async(use_lock, lock, std::string("pool")).get() == 0);
    lock.release();
    CHECK(pool.apply_async(use_lock, lock, std::string("pool")).get() == 1);
    pool.close();
    pool.join();
    CHECK(d.at("pool") == 1);
    CHECK(l.to_vector() == std::vector<std::string>{"pool"});
    CHECK(q.get() == 4);
    CHECK(v.value() == 4);
  }

  SECTION("as messages on a Queue and a Pipe, to a process started before they were sent") {
    auto dicts = m.queue<Counts>("dicts");
    auto [parent_conn, child_conn] =
        mpp::Pipe<std::tuple<Log, Jobs, Total, mpp::Lock>>();
    mpp::Process p(
        [](mpp::Queue<Counts> dicts, auto& conn) {
          Counts got = dicts.get();
          use_dict(got, "child");
          auto [l2, q2, v2, lock2] = conn.recv();
          use_list(l2, "child");
          use_queue(q2, "child");
          use_value(v2, "child");
          if (use_lock(lock2, "child") != 0) throw std::runtime_error("the lock should be held");
        },
        dicts, std::move(child_conn));
    lock.acquire();
    p.start();
    dicts.put(d);
    parent_conn.send({l, q, v, lock});
    p.join();
    lock.release();
    CHECK(p.exitcode() == 0);
    CHECK(d.at("child") == 1);
    CHECK(l.to_vector() == std::vector<std::string>{"child"});
    CHECK(q.get() == 5);
    CHECK(v.value() == 5);
  }
}

TEST_CASE("a handle received as another kind or types is a TypeMismatch, and a standalone one is refused") {
  mpp::Manager m(1 << 20);
  auto d = m.dict<std::string, int>("d");
  auto e = mpp::detail::encode(d);
  CHECK_THROWS_AS((mpp::detail::decode<mpp::Dict<std::string, double>>(e.bytes())), mpp::TypeMismatch);
  CHECK_THROWS_AS(mpp::detail::decode<mpp::List<int>>(e.bytes()), mpp::TypeMismatch);
  CHECK(mpp::detail::decode<Counts>(e.bytes()).size() == 0);

  mpp::Queue<int> standalone;
  auto [a, b] = mpp::Pipe<mpp::Queue<int>>();
  CHECK_THROWS_WITH(a.send(standalone), Catch::Contains("made without a Manager"));
}
