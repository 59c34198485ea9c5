// Framing and the authentication handshake against the captured Python traffic.
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <thread>

#include "mpp/net/connection.hpp"
#include "support/wire_vectors.hpp"

using namespace mpp::net;
using mpp::test::read_hex_file;
using mpp::test::read_tsv;
using mpp::test::unhex;
using mpp::test::wire_scenarios;
using mpp::test::wire_vectors_dir;

namespace {

std::pair<Connection, Connection> socket_pair() {
  int fds[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  return {Connection(fds[0]), Connection(fds[1])};
}

void write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t r = write(fd, s.data() + off, s.size() - off);
    REQUIRE(r > 0);
    off += static_cast<std::size_t>(r);
  }
}

// Writes what the peer takes until it shuts its end down (no SIGPIPE; from a thread).
void send_until_closed(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t r = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (r <= 0) return;
    off += static_cast<std::size_t>(r);
  }
}

// frames.tsv rows by (conn, dir), in order.
std::map<std::pair<int, std::string>, std::vector<std::vector<std::string>>> frames_of(
    const std::string& sc) {
  std::map<std::pair<int, std::string>, std::vector<std::vector<std::string>>> out;
  for (auto& row : read_tsv(wire_vectors_dir() / sc / "frames.tsv"))
    out[{std::stoi(row[0]), row[1]}].push_back(row);
  return out;
}

}  // namespace

TEST_CASE("captured streams split into exactly the frames Python sent") {
  int frames = 0;
  for (auto& sc : wire_scenarios()) {
    for (auto& [key, rows] : frames_of(sc)) {
      char name[32];
      std::snprintf(name, sizeof name, "c%02d.%s.hex", key.first, key.second.c_str());
      std::string stream = read_hex_file(wire_vectors_dir() / sc / name);
      INFO(sc << "/" << name);
      auto [a, b] = socket_pair();
      std::thread writer([&, fd = a.fd()] {
        write_all(fd, stream);
        ::shutdown(fd, SHUT_WR);
      });
      for (auto& row : rows) {
        auto f = b.recv_bytes(kDefaultMaxFrame, deadline_after(std::chrono::seconds(5)));
        REQUIRE(f);
        CHECK(*f == unhex(row[5]));
        ++frames;
      }
      CHECK_FALSE(b.recv_bytes());  // then a clean end
      writer.join();
    }
  }
  CHECK(frames > 450);
}

TEST_CASE("every captured challenge/answer pair verifies with the HMAC it names") {
  int pairs = 0;
  for (auto& sc : wire_scenarios()) {
    auto all = frames_of(sc);
    for (auto& [key, rows] : all) {
      if (key.second != "s2c") continue;
      auto& c2s = all[{key.first, "c2s"}];
      std::string authkey = (sc.rfind("probe", 0) == 0 && key.first == 1) ? "wrong-key" : "abc";
      // server challenges first (s2c #1 / c2s #1), then the client (c2s #2 / s2c #2).
      std::vector<std::pair<std::string, std::string>> exchanges = {
          {unhex(rows.at(0)[5]), unhex(c2s.at(0)[5])}};
      // (s2c #2 is the #WELCOME#/#FAILURE# verdict, so the server's answer is s2c #3.)
      if (c2s.size() > 1 && rows.size() > 2 && c2s[1][3].rfind("auth-challenge", 0) == 0)
        exchanges.emplace_back(unhex(c2s[1][5]), unhex(rows[2][5]));
      for (auto& [challenge, answer] : exchanges) {
        INFO(sc << " conn " << key.first);
        REQUIRE(challenge.rfind("#CHALLENGE#", 0) == 0);
        std::string msg = challenge.substr(11);
        if (answer.size() == 16) {
          CHECK(answer == hmac_digest("md5", authkey, msg));
        } else {
          auto close = answer.find('}');
          std::string name = answer.substr(1, close - 1);
          CHECK(answer.substr(close + 1) == hmac_digest(name, authkey, msg));
        }
        ++pairs;
      }
    }
  }
  CHECK(pairs >= 20);
}

TEST_CASE("answer_challenge answers a captured challenge exactly as CPython did") {
  // py311: legacy 20-byte challenge -> raw MD5. py313: {sha256} challenge -> {sha256}+MAC.
  // w313-m311 s2c is a 3.11 server's legacy challenge answered by a 3.13 client.
  for (std::string sc : {"py311", "py313", "w313-m311"}) {
    auto rows = frames_of(sc);
    std::string challenge = unhex(rows[{1, "s2c"}].at(0)[5]);
    std::string expected = unhex(rows[{1, "c2s"}].at(0)[5]);
    auto [server, client] = socket_pair();
    server.send_bytes(challenge);
    server.send_bytes("#WELCOME#");
    answer_challenge(client, "abc", deadline_after(std::chrono::seconds(5)));
    CHECK(server.recv_bytes() == expected);
  }
}

TEST_CASE("handshake both ways: right key welcomed, wrong key refused on both sides") {
  for (bool same_key : {true, false}) {
    auto conns = socket_pair();
    Connection& server = conns.first;
    Connection& client = conns.second;
    std::string server_error, client_error;
    std::thread t([&] {
      try {
        deliver_challenge(server, "secret", deadline_after(std::chrono::seconds(5)));
        answer_challenge(server, "secret", deadline_after(std::chrono::seconds(5)));
      } catch (const mpp::AuthenticationError& e) {
        server_error = e.what();
      }
    });
    try {
      answer_challenge(client, same_key ? "secret" : "guess",
                       deadline_after(std::chrono::seconds(5)));
      deliver_challenge(client, same_key ? "secret" : "guess",
                        deadline_after(std::chrono::seconds(5)));
    } catch (const mpp::AuthenticationError& e) {
      client_error = e.what();
    }
    t.join();
    if (same_key) {
      CHECK(server_error.empty());
      CHECK(client_error.empty());
    } else {
      CHECK(server_error == "digest received was wrong");
      CHECK(client_error == "digest sent was rejected");
    }
  }
}

TEST_CASE("a legacy MD5 answer is refused when legacy is switched off") {
  auto conns = socket_pair();
  Connection& server = conns.first;
  Connection& client = conns.second;
  std::thread t([&] {
    auto ch = client.recv_bytes();
    client.send_bytes(hmac_digest("md5", "abc", ch->substr(11)));
    (void)client.recv_bytes();
  });
  CHECK_THROWS_AS(deliver_challenge(server, "abc", std::nullopt, /*allow_legacy=*/false),
                  mpp::AuthenticationError);
  t.join();
}

TEST_CASE("oversized and malformed frames are refused before allocation") {
  auto [a, b] = socket_pair();
  write_all(a.fd(), unhex("7fffffff"));
  CHECK_THROWS_WITH(b.recv_bytes(1024), Catch::Contains("refused"));
  auto [c, d] = socket_pair();
  write_all(c.fd(), unhex("ffffffff"
                          "8000000000000000"));  // -1 then 2^63
  CHECK_THROWS_AS(d.recv_bytes(), mpp::DecodeError);
  auto [e, f] = socket_pair();
  write_all(e.fd(), unhex("fffffffb"));  // -5
  CHECK_THROWS_WITH(f.recv_bytes(), Catch::Contains("negative"));
  auto [g, h] = socket_pair();
  write_all(g.fd(), unhex("ffffffff"
                          "0000000000000003"
                          "616263"));  // the long form, small
  CHECK(h.recv_bytes() == std::optional<std::string>("abc"));
  write_all(g.fd(), unhex("00000005"
                          "6162"));
  ::shutdown(g.fd(), SHUT_WR);
  CHECK_THROWS_AS(h.recv_bytes(), mpp::EOFError);
  auto [i, j] = socket_pair();
  CHECK_THROWS_AS(j.recv_bytes(kDefaultMaxFrame, deadline_after(std::chrono::milliseconds(50))),
                  mpp::TimeoutError);
}

TEST_CASE("random and mutated byte streams: the frame reader returns or refuses, nothing else") {
  std::mt19937 rng(7);
  std::vector<std::string> corpus;
  for (auto& sc : wire_scenarios())
    for (auto& [key, rows] : frames_of(sc)) {
      char name[32];
      std::snprintf(name, sizeof name, "c%02d.%s.hex", key.first, key.second.c_str());
      corpus.push_back(read_hex_file(wire_vectors_dir() / sc / name));
    }
  for (int iter = 0; iter < 300; ++iter) {
    std::string s = corpus[rng() % corpus.size()].substr(0, 4096);
    for (int e = 0; e < 3 && !s.empty(); ++e) s[rng() % s.size()] = static_cast<char>(rng());
    auto [a, b] = socket_pair();
    write_all(a.fd(), s);
    ::shutdown(a.fd(), SHUT_WR);
    try {
      while (b.recv_bytes(4096, deadline_after(std::chrono::seconds(5)))) {
      }
    } catch (const mpp::DecodeError&) {
    } catch (const mpp::EOFError&) {
    }
  }
}

TEST_CASE("the receive buffer grows with the bytes that arrived, not with the announced length") {
  auto budget = std::make_shared<BufferBudget>(std::size_t{256} << 20);
  auto [a, b] = socket_pair();
  b.set_budget(budget);
  // 60 MiB announced, 300 KiB sent: the buffer holds about what arrived.
  std::thread writer(
      [fd = a.fd()] { send_until_closed(fd, unhex("03c00000") + std::string(300 << 10, 'x')); });
  CHECK_THROWS_AS(b.recv_bytes(kDefaultMaxFrame, deadline_after(std::chrono::milliseconds(1000))),
                  mpp::TimeoutError);
  ::shutdown(a.fd(), SHUT_RDWR);
  writer.join();
  CHECK(budget->in_use() <= (std::size_t{1} << 20));
  CHECK(budget->in_use() >= (std::size_t{200} << 10));
}

TEST_CASE("a buffer budget refuses the frame that would pass it and is given back") {
  auto budget = std::make_shared<BufferBudget>(std::size_t{4} << 20);
  {
    auto [a, b] = socket_pair();
    b.set_budget(budget);
    // A 3 MiB frame fits in the 4 MiB budget (beyond each connection's free first 64 KiB).
    std::string big(3 << 20, 'y');
    std::thread writer([fd = a.fd(), &big] { write_all(fd, unhex("00300000") + big); });
    CHECK(b.recv_bytes() == std::optional<std::string>(big));
    writer.join();
    CHECK(budget->in_use() == 0);  // a large frame's buffer is handed over, not kept
    // Small frames cost the budget nothing.
    write_all(a.fd(), unhex("00000003") + "abc");
    CHECK(b.recv_bytes() == std::optional<std::string>("abc"));
    CHECK(budget->in_use() == 0);
  }
  auto [c, d] = socket_pair();
  d.set_budget(budget);
  // d holds 3 MiB of an unfinished 8 MiB frame; f's 2 MiB frame then finds too little left.
  std::thread w1(
      [fd = c.fd()] { send_until_closed(fd, unhex("00800000") + std::string(3 << 20, 'z')); });
  CHECK_THROWS_AS(d.recv_bytes(kDefaultMaxFrame, deadline_after(std::chrono::milliseconds(2000))),
                  mpp::TimeoutError);
  ::shutdown(c.fd(), SHUT_RDWR);
  w1.join();
  std::size_t held = budget->in_use();
  CHECK(held >= (std::size_t{3} << 20) - (64 << 10));
  {
    auto [e, f] = socket_pair();
    f.set_budget(budget);
    std::thread w2(
        [fd = e.fd()] { send_until_closed(fd, unhex("00200000") + std::string(2 << 20, 'w')); });
    try {
      f.recv_bytes();
      FAIL("a frame beyond the budget was accepted");
    } catch (const mpp::OSError& err) {
      CHECK(err.error_number() == ENOMEM);
      CHECK_THAT(err.what(), Catch::Contains("budget"));
    }
    ::shutdown(f.fd(), SHUT_RDWR);
    w2.join();
  }
  CHECK(budget->in_use() == held);  // f's part is given back with f
}
