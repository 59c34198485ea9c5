#include "mpp/pipe.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "support/child.hpp"

using namespace std::chrono_literals;

namespace {

struct Point {
  int x;
  double y;
};

void write_all(int fd, const void* p, std::size_t n) {
  auto* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, c, n);
    REQUIRE(w > 0);
    c += w;
    n -= static_cast<std::size_t>(w);
  }
}

}  // namespace

TEST_CASE("a duplex Pipe carries values of any codec type both ways, in order") {
  auto [a, b] = mpp::Pipe<std::vector<int>>();
  a.send({1, 2, 3});
  a.send({4, 5, 6});
  b.send({});
  CHECK(b.recv() == std::vector<int>{1, 2, 3});
  CHECK(b.recv() == std::vector<int>{4, 5, 6});
  CHECK(a.recv().empty());
  CHECK(a.readable());
  CHECK(a.writable());

  auto [p, q] = mpp::Pipe<Point>();
  p.send({7, 2.5});
  Point r = q.recv();
  CHECK(r.x == 7);
  CHECK(r.y == 2.5);

  auto [s, t] = mpp::Pipe<std::string>();
  s.send(std::string("hello\0world", 11));
  s.send("");
  CHECK(t.recv() == std::string("hello\0world", 11));
  CHECK(t.recv().empty());
}

TEST_CASE("Python's Pipe example: a child sends twice, the parent receives twice") {
  auto [parent_conn, child_conn] = mpp::Pipe<std::vector<int>>();
  mpp::test::Child child([&](int) {
    child_conn.send({1, 2, 3});
    child_conn.send({4, 5, 6});
    child_conn.close();
  });
  child_conn.close();
  CHECK(parent_conn.recv() == std::vector<int>{1, 2, 3});
  CHECK(parent_conn.recv() == std::vector<int>{4, 5, 6});
  CHECK(child.exit_code() == 0);
  CHECK_THROWS_AS(parent_conn.recv(), mpp::EOFError);
}

TEST_CASE("EOF: what was sent is read first, then EOFError, and poll reports EOF as readable") {
  auto [a, b] = mpp::Pipe<int>();
  CHECK_FALSE(b.poll());
  a.send(42);
  CHECK(b.poll());
  a.close();
  CHECK(a.closed());
  CHECK_THROWS_AS(a.fileno(), mpp::OSError);
  CHECK_THROWS_AS(a.send(1), mpp::OSError);
  CHECK(b.recv() == 42);
  CHECK(b.poll());
  CHECK_THROWS_AS(b.recv(), mpp::EOFError);
  CHECK_THROWS_AS(b.recv_bytes(), mpp::EOFError);
}

TEST_CASE("poll with a timeout waits for a message or gives up") {
  auto [a, b] = mpp::Pipe<int>();
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(b.poll(20ms));
  CHECK(std::chrono::steady_clock::now() - t0 >= 20ms);
  mpp::test::Child child([&](int) { a.send(5); });
  CHECK(b.poll(std::nullopt));
  CHECK(b.recv() == 5);
  CHECK(child.exit_code() == 0);
}

TEST_CASE("garbage bytes written into the socket are a DecodeError and close the connection") {
  auto [a, b] = mpp::Pipe<std::string>();
  const char garbage[] = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
  write_all(a.fileno(), garbage, sizeof garbage);
  try {
    (void)b.recv();
    FAIL("garbage was accepted");
  } catch (const mpp::DecodeError& e) {
    CHECK_THAT(e.what(), Catch::Contains("not an mpp frame"));
  }
  CHECK(b.closed());
}

TEST_CASE("a frame cut short by its sender is a DecodeError, never a hang or a crash") {
  SECTION("inside the header") {
    auto [a, b] = mpp::Pipe<std::string>();
    write_all(a.fileno(), "MPP", 3);
    a.close();
    CHECK_THROWS_AS(b.recv(), mpp::DecodeError);
    CHECK(b.closed());
  }
  SECTION("inside the payload") {
    auto [a, b] = mpp::Pipe<std::string>();
    auto [x, y] = mpp::Pipe<std::string>();
    x.send(std::string(100, 'x'));
    // Take x's valid 16-byte header and 10 payload bytes and replay them into a.
    char buf[26];
    std::size_t got = 0;
    while (got < sizeof buf) got += static_cast<std::size_t>(::read(y.fileno(), buf + got, sizeof buf - got));
    write_all(a.fileno(), buf, sizeof buf);
    a.close();
    try {
      (void)b.recv();
      FAIL("a truncated frame was accepted");
    } catch (const mpp::DecodeError& e) {
      CHECK_THAT(e.what(), Catch::Contains("truncated"));
    }
    CHECK(b.closed());
  }
}

TEST_CASE("messages around the record boundaries arrive whole through every receive call") {
  // A frame is a first record (header + 4080 payload bytes) and then 64 KiB records.
  auto [a, b] = mpp::Pipe<std::string>();
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{4079}, std::size_t{4080},
                           std::size_t{4081}, std::size_t{4080 + 65536}, std::size_t{4081 + 65536},
                           std::size_t{3} << 20}) {
    std::string m(size, '\0');
    for (std::size_t i = 0; i < size; ++i) m[i] = static_cast<char>(i * 7 + size);
    mpp::test::Child sender([&](int) {
      a.send(m);
      a.send_bytes(m);
      a.send_bytes(m);
    });
    CHECK(b.recv() == m);
    CHECK(b.recv_bytes() == m);
    std::vector<char> buf(size + 3, '.');
    REQUIRE(b.recv_bytes_into(std::span<char>(buf), 3) == size);
    CHECK(std::string(buf.begin() + 3, buf.end()) == m);
    CHECK(sender.exit_code() == 0);
  }
  // A trivially copyable type larger than the first record.
  auto [c, d] = mpp::Pipe<std::array<std::uint32_t, 3000>>();
  std::array<std::uint32_t, 3000> big{};
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint32_t>(i * i);
  c.send(big);
  CHECK(d.recv() == big);
}

TEST_CASE("a record longer than its frame announced is a DecodeError") {
  auto [a, b] = mpp::Pipe<std::string>();
  auto [x, y] = mpp::Pipe<std::string>();
  x.send(std::string(10, 'x'));
  // Take x's valid header for a 10-byte payload and send it with 100 payload bytes.
  char buf[16 + 100] = {};
  REQUIRE(::read(y.fileno(), buf, sizeof buf) == 26);
  write_all(a.fileno(), buf, sizeof buf);
  try {
    (void)b.recv();
    FAIL("an overlong record was accepted");
  } catch (const mpp::DecodeError& e) {
    CHECK_THAT(e.what(), Catch::Contains("longer than its frame"));
  }
  CHECK(b.closed());
}

TEST_CASE("a frame above the size limit is refused before anything is allocated") {
  auto [a, b] = mpp::Pipe<std::string>();
  b.set_max_message_bytes(1000);
  a.send(std::string(999, 'a'));
  a.send(std::string(2000, 'b'));
  CHECK(b.recv().size() == 999);
  CHECK_THROWS_AS(b.recv(), mpp::DecodeError);
  CHECK(b.closed());
}

TEST_CASE("recv_bytes, maxlength, recv_bytes_into and BufferTooShort behave as Python's") {
  auto [a, b] = mpp::Pipe<int>();
  a.send_bytes("hello world", 6);
  a.send_bytes("hello world", 0, 5);
  CHECK(b.recv_bytes() == "world");
  std::vector<char> buf(8, '.');
  CHECK(b.recv_bytes_into(std::span<char>(buf), 2) == 5);
  CHECK(std::string(buf.begin(), buf.end()) == "..hello.");
  CHECK_THROWS_AS(a.send_bytes("abc", 4), mpp::ValueError);
  CHECK_THROWS_AS(a.send_bytes("abc", 1, 3), mpp::ValueError);

  a.send_bytes("0123456789");
  try {
    (void)b.recv_bytes_into(std::span<char>(buf));
    FAIL("no BufferTooShort");
  } catch (const mpp::BufferTooShort& e) {
    CHECK(e.message() == "0123456789");
  }
  a.send(3);  // the stream is still in step after BufferTooShort
  CHECK(b.recv() == 3);

  a.send_bytes(std::string(100, 'z'));
  CHECK_THROWS_AS(b.recv_bytes(10), mpp::OSError);
  CHECK(b.closed());
}

TEST_CASE("a wrongly sized message for a trivial type is a DecodeError and the pipe stays usable") {
  auto [a, b] = mpp::Pipe<std::int64_t>();
  a.send_bytes("abc");
  a.send(9);
  CHECK_THROWS_AS(b.recv(), mpp::DecodeError);
  CHECK_FALSE(b.closed());
  CHECK(b.recv() == 9);
}

TEST_CASE("a one-way Pipe: the first end only receives, the second only sends") {
  auto [r, w] = mpp::Pipe<int>(false);
  CHECK(r.readable());
  CHECK_FALSE(r.writable());
  CHECK_FALSE(w.readable());
  CHECK(w.writable());
  w.send(1);
  CHECK(r.recv() == 1);
  CHECK_THROWS_AS(r.send(2), mpp::OSError);
  CHECK_THROWS_AS(w.recv(), mpp::OSError);
  CHECK_THROWS_AS(w.poll(), mpp::OSError);
}

TEST_CASE("sending to a closed peer is an OSError, not a SIGPIPE") {
  auto [a, b] = mpp::Pipe<std::string>();
  b.close();
  try {
    a.send("anyone there?");
    FAIL("send succeeded");
  } catch (const mpp::OSError& e) {
    CHECK(e.error_number() == EPIPE);
  }
}

TEST_CASE("wait returns the connections that are ready, or none after the timeout") {
  auto [a1, b1] = mpp::Pipe<int>();
  auto [a2, b2] = mpp::Pipe<int>();
  auto [a3, b3] = mpp::Pipe<int>();
  std::vector<mpp::Connection<int>*> readers{&b1, &b2, &b3};
  CHECK(mpp::wait(readers, 10ms).empty());
  a3.send(3);
  a1.send(1);
  auto ready = mpp::wait(readers);
  REQUIRE(ready.size() == 2);
  CHECK(ready[0] == &b1);
  CHECK(ready[1] == &b3);
  a2.close();
  ready = mpp::wait(readers, 0ms);
  CHECK(ready.size() == 3);
  CHECK_THROWS_AS(b2.recv(), mpp::EOFError);
}

namespace {
std::atomic<int> g_signals{0};
void count_signal(int) { g_signals.fetch_add(1, std::memory_order_relaxed); }
}  // namespace

TEST_CASE("a 64 MiB message crosses a Pipe whole, even with signals interrupting the reads") {
  struct sigaction sa {};
  sa.sa_handler = count_signal;  // no SA_RESTART: blocking calls see EINTR
  struct sigaction old {};
  sigaction(SIGUSR1, &sa, &old);

  auto [a, b] = mpp::Pipe<std::string>();
  auto [stop_r, stop_w] = mpp::Pipe<int>();
  std::string big(64u << 20, '\0');
  for (std::size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>(i / 4096);
  pid_t parent = getpid();
  mpp::test::Child pest([&](int ready) {
    mpp::test::signal_ready(ready);
    while (!stop_r.poll()) ::kill(parent, SIGUSR1);
  });
  REQUIRE(pest.wait_ready());
  mpp::test::Child sender([&](int) { a.send(big); });
  std::string got = b.recv();
  stop_w.send(1);
  CHECK(pest.exit_code() == 0);
  CHECK(sender.exit_code() == 0);
  sigaction(SIGUSR1, &old, nullptr);
  CHECK(got.size() == big.size());
  CHECK(got == big);
}
