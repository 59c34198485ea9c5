// BaseManager server and client, mpp with mpp: proxies, exceptions both ways, a forked server,
// wrong keys, hostile input, and many connections at once.
#include <sys/wait.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <random>
#include <thread>

#include "mpp/net/manager.hpp"
#include "mpp/net/pickle.hpp"

using namespace mpp::net;
using namespace std::chrono_literals;

namespace {

// A server on a free port, served by a thread of this process, for the test's duration.
struct ThreadServer {
  std::vector<std::string> log;
  std::mutex log_mu;
  std::shared_ptr<LocalQueue> queue = std::make_shared<LocalQueue>();
  BaseManager mgr;
  std::thread t;

  explicit ThreadServer(ManagerOptions o = {}) : mgr(Address{"127.0.0.1", 0}, "abc", with_log(std::move(o))) {
    mgr.register_("get_task_queue", queue);
    mgr.register_("get_dict", std::make_shared<LocalDict>());
    mgr.register_("get_list", std::make_shared<LocalList>());
    mgr.register_("get_value", std::make_shared<LocalValue>(PyObject(0)));
    mgr.register_("Queue", [] { return std::make_shared<LocalQueue>(); });
    mgr.listen();
    t = std::thread([this] { mgr.serve_forever(); });
  }
  ~ThreadServer() {
    mgr.shutdown();
    t.join();
  }
  ManagerOptions with_log(ManagerOptions o) {
    o.log = [this](const std::string& line) {
      std::lock_guard lock(log_mu);
      log.push_back(line);
    };
    return o;
  }
  std::size_t log_count(const std::string& needle) {
    std::lock_guard lock(log_mu);
    std::size_t n = 0;
    for (auto& l : log) n += l.find(needle) != std::string::npos;
    return n;
  }
  BaseManager client(const std::string& key = "abc") { return BaseManager(mgr.address(), key); }
};

}  // namespace

TEST_CASE("queue proxy: put, get with timeout, Empty, nowait, qsize") {
  ThreadServer s;
  BaseManager c(s.mgr.address(), "abc");
  c.connect();
  auto q = c.queue<std::int64_t>("get_task_queue");
  for (int i = 0; i < 10; ++i) q.put(i * i);
  CHECK(q.qsize() == 10);
  CHECK(s.queue->object().qsize() == 10);
  for (int i = 0; i < 10; ++i) CHECK(q.get(1s) == i * i);
  CHECK(q.empty());
  CHECK_THROWS_AS(q.get(10ms), mpp::Empty);
  CHECK_THROWS_AS(q.get_nowait(), mpp::Empty);
  q.put_nowait(5);
  CHECK(q.get_nowait() == 5);
  // Values of another type arrive as what they are; asking for the wrong type is TypeMismatch.
  auto any = c.queue<PyObject>("get_task_queue");
  any.put(py_tuple("a", 1.5, Bytes{std::string("\x00\x01", 2)}));
  CHECK(repr(q.proxy().call_method("get")) == "('a', 1.5, b'\\x00\\x01')");
  any.put("text");
  CHECK_THROWS_AS(q.get(), mpp::TypeMismatch);
}

TEST_CASE("each create of a registered factory makes a new object, refcounts free them") {
  ThreadServer s;
  auto c = s.client();
  auto q1 = c.queue<std::string>("Queue");
  auto q2 = c.queue<std::string>("Queue");
  CHECK(q1.proxy().ident() != q2.proxy().ident());
  q1.put("one");
  CHECK(q2.empty());
  CHECK(q1.get() == "one");
  CHECK_THROWS_AS(c.proxy("no_such_typeid"), mpp::RemoteError);
}

TEST_CASE("dict, list and value proxies behave as the local objects") {
  ThreadServer s;
  auto c = s.client();
  auto d = c.dict<std::string, std::int64_t>("get_dict");
  d.set("a", 1);
  d.set("b", 2);
  d.set("a", 3);
  CHECK(d["a"] == 3);
  CHECK(d.size() == 2);
  CHECK(d.keys() == std::vector<std::string>{"a", "b"});
  CHECK_FALSE(d.get("zz"));
  CHECK_THROWS_AS(d["zz"], mpp::KeyError);
  CHECK(d.pop("a") == 3);
  CHECK_FALSE(d.contains("a"));
  d.update({{"x", 9}});
  CHECK(d.copy() == std::map<std::string, std::int64_t>{{"b", 2}, {"x", 9}});

  auto l = c.list<std::string>("get_list");
  l.append("x");
  l.extend({"y", "z"});
  l.insert(0, "w");
  CHECK(l.to_vector() == std::vector<std::string>{"w", "x", "y", "z"});
  CHECK(l[-1] == "z");
  CHECK(l.index("y") == 2);
  CHECK(l.pop() == "z");
  CHECK_THROWS_AS(l[10], mpp::IndexError);
  CHECK_THROWS_AS(l.remove("nope"), PythonException);
  CHECK(l.size() == 3);

  auto v = c.value<double>("get_value");
  CHECK(v.get() == 0);
  v.set(2.5);
  CHECK(v.get() == 2.5);

  struct Point {
    int x, y;
  };
  auto pv = c.value<Point>("get_value");  // a C++ type travels as codec bytes
  pv.set(Point{3, 4});
  CHECK(pv.get().y == 4);
}

TEST_CASE("a get blocked on one proxy does not block other clients") {
  ThreadServer s;
  auto c = s.client();
  auto waiter = c.queue<std::int64_t>("get_task_queue");
  std::atomic<std::int64_t> got{-1};
  std::thread t([&] { got = waiter.get(30s); });
  auto other = s.client().queue<std::int64_t>("get_task_queue");
  auto d = s.client().dict("get_dict");
  for (int i = 0; i < 100; ++i) d.set(i, i);  // served while the get waits
  CHECK(d.size() == 100);
  other.put(42);
  t.join();
  CHECK(got == 42);
}

TEST_CASE("wrong authkey: the client gets AuthenticationError, the server logs it and goes on") {
  ThreadServer s;
  auto bad = s.client("wrong");
  CHECK_THROWS_AS(bad.connect(), mpp::AuthenticationError);
  CHECK_THROWS_AS(bad.queue("get_task_queue"), mpp::AuthenticationError);
  auto good = s.client();
  good.connect();
  auto q = good.queue<std::int64_t>("get_task_queue");
  q.put(1);
  CHECK(q.get() == 1);
  // Another server, another key: refused the same way.
  ThreadServer other;
  BaseManager c2(other.mgr.address(), "not-abc");
  CHECK_THROWS_AS(c2.connect(), mpp::AuthenticationError);
  CHECK(s.log_count("rejected") == 2);
}

TEST_CASE("hostile requests after authentication get a traceback and the connection goes on") {
  ThreadServer s;
  BaseManager c = s.client();
  auto q = c.queue<std::int64_t>("get_task_queue");
  q.put(7);
  detail::ClientConfig cfg{"127.0.0.1", c.address().port, "abc"};
  Connection conn = detail::open_connection(cfg);
  detail::roundtrip(conn, py_tuple(None{}, "accept_connection", Tuple{{"x"}}, Dict{}), kDefaultMaxFrame, std::nullopt);
  // A pickle that would call os.system in Python.
  conn.send_bytes(std::string("\x80\x02" "cposix\nsystem\nX\x04\x00\x00\x00true\x85R.", 25));
  auto reply = unpickle(*conn.recv_bytes());
  CHECK(repr(reply).find("#TRACEBACK") != std::string::npos);
  CHECK(repr(reply).find("posix.system is not allowed") != std::string::npos);
  // Not a request tuple, an unknown ident, a method that is not exposed.
  CHECK_THROWS_AS(detail::roundtrip(conn, PyObject(1), kDefaultMaxFrame, std::nullopt), mpp::RemoteError);
  CHECK_THROWS_AS(detail::roundtrip(conn, py_tuple("ffff", "get", Tuple{}, Dict{}), kDefaultMaxFrame, std::nullopt),
                  mpp::RemoteError);
  CHECK_THROWS_WITH(detail::roundtrip(conn, py_tuple(q.proxy().ident(), "__init__", Tuple{}, Dict{}),
                                      kDefaultMaxFrame, std::nullopt),
                    Catch::Contains("not exposed"));
  // Still in step: a real call works on the same connection.
  CHECK(detail::roundtrip(conn, py_tuple(q.proxy().ident(), "get", Tuple{}, Dict{}), kDefaultMaxFrame, std::nullopt) ==
        PyObject(7));
}

TEST_CASE("a frame over the limit is refused and only that connection closes") {
  ManagerOptions o;
  o.max_frame = 1024;
  ThreadServer s(o);
  auto c = s.client();
  auto q = c.queue<std::string>("get_task_queue");
  CHECK_THROWS(q.put(std::string(4096, 'x')));
  auto q2 = c.queue<std::string>("get_task_queue");
  q2.put("small");
  CHECK(q2.get() == "small");
  CHECK(s.log_count("refused") == 1);
}

TEST_CASE("many garbage connections while a good client keeps working") {
  ManagerOptions o;
  o.handshake_timeout = 2s;
  ThreadServer s(o);
  auto good = s.client().queue<std::int64_t>("get_task_queue");
  std::atomic<bool> done{false};
  std::vector<std::thread> attackers;
  for (int a = 0; a < 4; ++a) {
    attackers.emplace_back([&, a] {
      std::mt19937 rng(a);
      while (!done) {
        try {
          Connection c = Connection::connect("127.0.0.1", s.mgr.address().port);
          switch (rng() % 4) {
            case 0: break;  // connect and leave
            case 1: c.send_bytes(std::string(rng() % 64, static_cast<char>(rng()))); break;
            case 2: {
              std::string junk(rng() % 300, '\0');
              for (auto& ch : junk) ch = static_cast<char>(rng());
              (void)!::write(c.fd(), junk.data(), junk.size());
              break;
            }
            case 3: (void)!::write(c.fd(), "\x7f\xff\xff\xff", 4); break;
          }
        } catch (const mpp::Error&) {
        }
      }
    });
  }
  for (int i = 0; i < 2000; ++i) {
    good.put(i);
    REQUIRE(good.get(5s) == i);
  }
  done = true;
  for (auto& t : attackers) t.join();
}

TEST_CASE("start() forks the server, shutdown() stops and reaps it") {
  auto q = std::make_shared<LocalQueue>();
  BaseManager m(Address{"127.0.0.1", 0}, "abc");
  m.register_("get_task_queue", q);
  m.start();
  REQUIRE(m.server_pid() > 0);
  pid_t pid = m.server_pid();
  BaseManager c(m.address(), "abc");
  c.connect();
  {
    auto remote = c.queue<std::int64_t>("get_task_queue");
    remote.put(11);
    CHECK(remote.get() == 11);
    CHECK(q->object().qsize() == 0);  // the child serves its own copy
  }
  m.shutdown();
  CHECK(m.server_pid() == -1);
  CHECK(::kill(pid, 0) == -1);  // reaped: no such process any more
  CHECK_THROWS_AS(c.connect(), mpp::OSError);
}

TEST_CASE("start() reports a port in use") {
  BaseManager a(Address{"127.0.0.1", 0}, "abc");
  a.start();
  BaseManager b(a.address(), "abc");
  CHECK_THROWS_AS(b.start(), mpp::OSError);
}
