// mpp's shared-memory objects served by a BaseManager: a local process and a remote client
// on the same mpp::Queue; Dict, List and Value of a Manager segment, read and written both
// locally and over TCP; Python's key equality (1 == 1.0 == True); interruption of a blocked get.
#include <sys/wait.h>

#include <atomic>
#include <cmath>
#include <catch2/catch.hpp>
#include <set>
#include <thread>

#include "mpp/manager.hpp"
#include "mpp/net/manager.hpp"
#include "support/child.hpp"

using namespace mpp::net;
using namespace std::chrono_literals;
using mpp::test::Child;

TEST_CASE("an mpp::Queue served over TCP is one queue for local processes and remote clients") {
  mpp::Queue<std::int64_t> tasks, results;
  BaseManager m(Address{"127.0.0.1", 0}, "abc");
  m.register_("get_task_queue", tasks);
  m.register_("get_result_queue", results);
  m.start();
  BaseManager c(m.address(), "abc");
  auto rt = c.queue<std::int64_t>("get_task_queue");
  auto rr = c.queue<std::int64_t>("get_result_queue");

  // One item each way between shared memory and the wire.
  rt.put(41);
  CHECK(tasks.get(5s) == 41);
  tasks.put(42);
  CHECK(rt.get(5s) == 42);
  CHECK(rt.qsize() == 0);
  CHECK_THROWS_AS(rt.get_nowait(), mpp::Empty);
  CHECK_THROWS_AS(rt.task_done(), mpp::RemoteError);  // a plain Queue is not joinable

  // A local consumer (shared memory) and a remote one (TCP, in another process) share the
  // tasks; every task is answered exactly once, tagged with who did it.
  constexpr std::int64_t N = 400;
  Child local([&](int ready) {
    mpp::test::signal_ready(ready);
    for (std::int64_t n; (n = tasks.get()) >= 0;) results.put(2 * n);
  });
  Child remote([&](int ready) {
    BaseManager rc(m.address(), "abc");
    auto t = rc.queue<std::int64_t>("get_task_queue");
    auto r = rc.queue<std::int64_t>("get_result_queue");
    t.qsize();  // connected and authenticated before saying ready
    mpp::test::signal_ready(ready);
    for (std::int64_t n; (n = t.get()) >= 0;) r.put(2 * n + 1);
  });
  REQUIRE(local.wait_ready());
  REQUIRE(remote.wait_ready());
  for (std::int64_t n = 1; n <= N; ++n) {
    if (n % 2) tasks.put(n);
    else rt.put(n);
  }
  tasks.put(-1);
  rt.put(-1);
  std::set<std::int64_t> seen;
  std::int64_t by_remote = 0;
  for (std::int64_t i = 0; i < N; ++i) {
    std::int64_t r = i % 2 ? results.get(10s) : rr.get(10s);
    by_remote += r % 2;
    CHECK(seen.insert(r / 2).second);
  }
  CHECK(seen.size() == static_cast<std::size_t>(N));
  CHECK(*seen.begin() == 1);
  CHECK(*seen.rbegin() == N);
  CHECK(local.exit_code() == 0);
  CHECK(remote.exit_code() == 0);
  CHECK(tasks.qsize() == 0);
  CHECK(results.qsize() == 0);
  WARN("the remote consumer did " << by_remote << " of " << N << " tasks");
  m.shutdown();
}

TEST_CASE("a JoinableQueue served over TCP: task_done and join reach the shared queue") {
  mpp::JoinableQueue<std::string> q;
  BaseManager m(Address{"127.0.0.1", 0}, "abc");
  m.register_("q", q);
  m.start();
  BaseManager c(m.address(), "abc");
  auto r = c.queue<std::string>("q");
  r.put("job");
  CHECK(q.get(5s) == "job");
  CHECK_THROWS_AS(q.join(10ms), mpp::TimeoutError);
  r.task_done();
  q.join(5s);
  r.join();
  CHECK_THROWS_AS(r.task_done(), mpp::RemoteError);  // ValueError: more task_done than put
  m.shutdown();
}

TEST_CASE("Dict, List and Value of a Manager segment, used locally and over TCP at once") {
  mpp::Manager shm;
  auto d = shm.dict<std::string, std::int64_t>("d");
  auto byint = shm.dict<std::int64_t, std::string>("byint");
  auto l = shm.list<std::int64_t>("l");
  auto v = shm.value<double>("v", 0.5);
  BaseManager m(Address{"127.0.0.1", 0}, "abc");
  m.register_("d", d);
  m.register_("byint", byint);
  m.register_("l", l);
  m.register_("v", v);
  m.start();
  BaseManager c(m.address(), "abc");

  auto rd = c.dict<std::string, std::int64_t>("d");
  rd.set("a", 1);
  CHECK(d.get("a") == 1);
  d.set("b", 2);
  CHECK(rd["b"] == 2);
  CHECK(rd.size() == 2);
  CHECK(rd.keys() == std::vector<std::string>{"a", "b"});
  CHECK(rd.pop("a") == 1);
  CHECK_FALSE(d.contains("a"));
  CHECK_THROWS_AS(rd["a"], mpp::KeyError);
  rd.update({{"c", 3}, {"d", 4}});
  CHECK(d.size() == 3);
  CHECK(rd.setdefault("c", 9) == 3);
  CHECK(rd.copy() == std::map<std::string, std::int64_t>{{"b", 2}, {"c", 3}, {"d", 4}});

  // Keys as Python compares them; a key the dict cannot hold is simply absent.
  auto any = c.dict<PyObject, PyObject>("byint");
  any.set(PyObject(1), PyObject("one"));
  CHECK(byint.get(1) == "one");
  CHECK(from_py<std::string>(any[PyObject(1.0)]) == "one");
  CHECK(from_py<std::string>(any[PyObject(true)]) == "one");
  CHECK_FALSE(any.contains(PyObject(1.5)));
  CHECK_THROWS_AS(any[PyObject("x")], mpp::KeyError);
  CHECK_THROWS_AS(any.set(PyObject("x"), PyObject("y")), PythonException);  // TypeError
  CHECK_THROWS_AS(any.set(PyObject(2), PyObject(2)), PythonException);
  any.set(PyObject(2.0), PyObject("two"));
  CHECK(byint.keys() == std::vector<std::int64_t>{1, 2});
  auto popped = from_py<std::tuple<std::int64_t, std::string>>(any.proxy().call_method("popitem"));
  CHECK(popped == std::tuple<std::int64_t, std::string>{2, "two"});

  auto rl = c.list<std::int64_t>("l");
  rl.append(5);
  l.append(6);
  CHECK(l.get(0) == 5);
  CHECK(rl[-1] == 6);
  rl.insert(0, 4);
  CHECK(l.to_vector() == std::vector<std::int64_t>{4, 5, 6});
  CHECK(rl.pop() == 6);
  CHECK(rl.index(5) == 1);
  CHECK(rl.count(5) == 1);
  CHECK(rl.contains(4));
  CHECK_FALSE(from_py<bool>(rl.proxy().call_method("__contains__", Tuple{{"text"}})));
  CHECK_THROWS_AS(rl[7], mpp::IndexError);
  CHECK_THROWS_AS(rl.remove(99), PythonException);  // ValueError
  CHECK_THROWS_AS(rl.reverse(), mpp::RemoteError);       // not one atomic step over shared memory: not exposed
  CHECK(rl.to_vector() == std::vector<std::int64_t>{4, 5});

  auto rv = c.value<double>("v");
  CHECK(rv.get() == 0.5);
  rv.set(2.5);
  CHECK(v.value() == 2.5);
  v.set_value(3.0);
  CHECK(rv.get() == 3.0);
  CHECK(from_py<double>(rv.proxy().get_value()) == 3.0);
  m.shutdown();
}

TEST_CASE("interrupt() ends a get blocked on an empty shared queue with EOFError") {
  mpp::Queue<int> q;
  ServedQueue<mpp::Queue<int>> served(q);
  CHECK_FALSE(served.try_call("get", {}, {}).has_value());  // would block: nothing taken, nothing sent
  CHECK(served.try_call("put", Tuple{{7}}, {}).has_value());
  CHECK(from_py<int>(*served.try_call("get", {}, {})) == 7);
  std::atomic<bool> eof{false};
  std::thread t([&] {
    try {
      served.call("get", {}, {});
    } catch (const mpp::EOFError&) {
      eof = true;
    }
  });
  served.interrupt();
  t.join();
  CHECK(eof);
  // A local put still works after the server let go of the queue.
  q.put(8);
  CHECK(q.get() == 8);
}

TEST_CASE("dict keys and list elements compare as in Python: 1 == 1.0 == True") {
  CHECK(py_equal(PyObject(1), PyObject(1.0)));
  CHECK(py_equal(PyObject(1), PyObject(true)));
  CHECK(py_equal(PyObject(0.0), PyObject(-0.0)));
  CHECK_FALSE(py_equal(PyObject(1), PyObject(1.5)));
  CHECK_FALSE(py_equal(PyObject(1), PyObject("1")));
  CHECK(py_equal(py_tuple(1, 2.0), py_tuple(1.0, 2)));
  CHECK(py_equal(Set{{PyObject(1), PyObject(2)}, true}, Set{{PyObject(2.0), PyObject(1)}, true}));
  CHECK_FALSE(py_equal(PyObject(std::nan("")), PyObject(std::nan(""))));
  CHECK(PyObject(1) != PyObject(true));  // operator== stays exact

  LocalDict d;
  d.call("__setitem__", Tuple{{1, "a"}}, {});
  d.call("__setitem__", Tuple{{1.0, "b"}}, {});
  CHECK(from_py<std::size_t>(d.call("__len__", {}, {})) == 1);
  CHECK(from_py<std::string>(d.call("__getitem__", Tuple{{true}}, {})) == "b");
  CHECK(repr(d.call("keys", {}, {})) == "[1]");  // the first key stays, as in Python
  d.call("__setitem__", Tuple{{py_tuple(1, 2.0), "t"}}, {});
  CHECK(from_py<bool>(d.call("__contains__", Tuple{{py_tuple(true, 2)}}, {})));
  d.call("__delitem__", Tuple{{1.0}}, {});
  CHECK(repr(d.call("items", {}, {})) == "[((1, 2.0), 't')]");

  LocalList l;
  l.call("extend", Tuple{{List{{PyObject(1), PyObject(true), PyObject(1.0), PyObject(2)}}}}, {});
  CHECK(from_py<std::size_t>(l.call("count", Tuple{{1}}, {})) == 3);
  CHECK(from_py<std::size_t>(l.call("index", Tuple{{2.0}}, {})) == 3);
  l.call("sort", {}, Dict{{{PyObject("reverse"), PyObject(true)}}});
  CHECK(repr(*l.value()) == "[2, 1, True, 1.0]");
}
