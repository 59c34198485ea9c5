// mpp::redis::Connection: URLs, logins (password, ACL users), errors, reconnects, forks;
// and the portable codec the Redis containers store values with.
#include <boost/serialization/map.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <catch2/catch.hpp>
#include <mpp/detail/portable_codec.hpp>
#include <mpp/redis/connection.hpp>

#include "redis/redis_support.hpp"
#include "support/child.hpp"

using mpp::redis::Connection;
using mpp::redis::Url;
using mpp::test::RedisServer;

namespace {

std::string error_of(const std::string& url) {
  try {
    Url::parse(url);
  } catch (const mpp::ValueError& e) {
    return e.what();
  }
  return "";
}

std::string bytes_hex(const std::string& s) {
  std::string out;
  char b[4];
  for (unsigned char c : s) {
    std::snprintf(b, sizeof b, "%02x", c);
    out += b;
  }
  return out;
}

struct Record {
  std::string name;
  std::vector<double> xs;
  std::map<std::string, int> tags;
  bool operator==(const Record&) const = default;
  template <class A>
  void serialize(A& ar, unsigned) {
    ar & name & xs & tags;
  }
};

enum class Colour : std::uint16_t { red = 1, blue = 0x0102 };

}  // namespace

TEST_CASE("URLs are parsed with their defaults") {
  Url u = Url::parse("redis://localhost");
  CHECK(u.host == "localhost");
  CHECK(u.port == 6379);
  CHECK(u.db == 0);
  CHECK(u.user.empty());
  CHECK(u.password.empty());

  u = Url::parse("redis://alice:s%3Acr%40t@10.1.2.3:7000/5");
  CHECK(u.user == "alice");
  CHECK(u.password == "s:cr@t");
  CHECK(u.host == "10.1.2.3");
  CHECK(u.port == 7000);
  CHECK(u.db == 5);
  CHECK(u.redacted() == "redis://alice:***@10.1.2.3:7000/5");

  u = Url::parse("redis://:pw@[::1]:6380/");
  CHECK(u.user.empty());
  CHECK(u.password == "pw");
  CHECK(u.host == "::1");
  CHECK(u.port == 6380);
  CHECK(u.redacted() == "redis://:***@[::1]:6380/0");
}

TEST_CASE("bad URLs are ValueErrors that say what is wrong and never show the password") {
  CHECK_THAT(error_of("http://h:1/0"), Catch::Contains("must start with 'redis://'"));
  CHECK_THAT(error_of("redis://"), Catch::Contains("host is missing"));
  CHECK_THAT(error_of("redis://h:/0"), Catch::Contains("port is empty"));
  CHECK_THAT(error_of("redis://h:abc"), Catch::Contains("port 'abc'"));
  CHECK_THAT(error_of("redis://h:0"), Catch::Contains("port '0'"));
  CHECK_THAT(error_of("redis://h:70000"), Catch::Contains("from 1 to 65535"));
  CHECK_THAT(error_of("redis://h:1/x"), Catch::Contains("database number 'x'"));
  CHECK_THAT(error_of("redis://h:1/-1"), Catch::Contains("database number"));
  CHECK_THAT(error_of("redis://[::1:1"), Catch::Contains("closing ']'"));
  CHECK_THAT(error_of("redis://topsecret@h"), Catch::Contains("':' is missing"));
  CHECK_THAT(error_of("redis://u:bad%zzpw@h"), Catch::Contains("two hex digits"));
  for (auto url : {"redis://u:topsecret@h:x", "redis://u:topsecret@:1", "redis://topsecret@h"}) {
    std::string e = error_of(url);
    CHECK(!e.empty());
    CHECK_THAT(e, !Catch::Contains("topsecret"));
  }
  CHECK_THROWS_AS(Connection("redis://h:99999"), mpp::ValueError);
}

TEST_CASE("numbers are encoded little-endian with a fixed size, strings as their bytes") {
  using mpp::detail::portable_decode;
  using mpp::detail::portable_encode_to;
  auto enc = [](const auto& v) {
    std::string s;
    portable_encode_to(v, s);
    return s;
  };
  CHECK(bytes_hex(enc(std::int32_t{0x01020304})) == "04030201");
  CHECK(bytes_hex(enc(std::int64_t{-2})) == "feffffffffffffff");
  CHECK(bytes_hex(enc(std::uint16_t{0xabcd})) == "cdab");
  CHECK(bytes_hex(enc(1.0)) == "000000000000f03f");
  CHECK(bytes_hex(enc(1.0f)) == "0000803f");
  CHECK(bytes_hex(enc(true)) == "01");
  CHECK(bytes_hex(enc(Colour::blue)) == "0201");
  CHECK(enc(std::string("a\0b", 3)) == std::string("a\0b", 3));
  CHECK(portable_decode<std::int32_t>(enc(std::int32_t{-123456})) == -123456);
  CHECK(portable_decode<double>(enc(-0.125)) == -0.125);
  CHECK(portable_decode<Colour>(enc(Colour::blue)) == Colour::blue);
  CHECK(portable_decode<bool>(enc(false)) == false);
  CHECK_THROWS_AS(portable_decode<std::int32_t>("abc"), mpp::DecodeError);
  CHECK_THROWS_AS(portable_decode<bool>("\x02"), mpp::DecodeError);
}

TEST_CASE("user types travel as a portable text archive") {
  Record r{"probe", {1.5, -2.25, 1e300}, {{"a", 1}, {"b", -7}}};
  std::string s;
  mpp::detail::portable_encode_to(r, s);
  CHECK_THAT(s, Catch::Contains("serialization::archive"));  // text, not native binary
  CHECK(mpp::detail::portable_decode<Record>(s) == r);
  CHECK_THROWS_AS(mpp::detail::portable_decode<Record>(s.substr(0, s.size() / 2)),
                  mpp::DecodeError);
  CHECK_THROWS_AS(mpp::detail::portable_decode<Record>("garbage"), mpp::DecodeError);
}

TEST_CASE("nothing listening is a ConnectionError naming the server") {
  int port = mpp::test::free_port();
  std::string url = "redis://127.0.0.1:" + std::to_string(port) + "/0";
  try {
    Connection c(url);
    FAIL("connected to a port nobody listens on");
  } catch (const mpp::ConnectionError& e) {
    CHECK_THAT(e.what(), Catch::Contains("cannot connect to Redis at " + url));
    CHECK(e.error_number() == ECONNREFUSED);
  }
}

TEST_CASE("commands, pipelines and error replies") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  Connection c(url);
  std::string key = mpp::test::unique_name("conn");
  c.command({"DEL", key});
  for (int i = 0; i < 100; ++i) c.append({"INCR", key});
  CHECK(c.pending() == 100);
  for (int i = 1; i <= 100; ++i) CHECK(c.read_reply().integer() == i);
  CHECK(c.command({"GET", key}).str() == "100");
  try {
    c.command({"LPUSH", key, "x"});
    FAIL("LPUSH on a string worked");
  } catch (const mpp::RemoteError& e) {
    CHECK(e.type_name() == "WRONGTYPE");
  }
  CHECK(c.command({"DEL", key}).integer() == 1);  // still usable
  CHECK(c.command({"GET", key}).is_nil());
  CHECK_THROWS_AS(c.read_reply(), mpp::ValueError);
}

TEST_CASE("a dropped connection fails the call in flight, and the next call reconnects") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  Connection c(url), killer(url);
  auto id = c.command({"CLIENT", "ID"}).integer();
  CHECK(c.generation() == 1);
  killer.command({"CLIENT", "KILL", "ID", std::to_string(id)});
  try {
    c.command({"PING"});
    FAIL("a command on a killed connection worked");
  } catch (const mpp::ConnectionError& e) {
    CHECK_THAT(e.what(), Catch::Contains("lost the connection to Redis"));
    CHECK_THAT(e.what(), Catch::Contains("may or may not have been applied"));
  }
  CHECK(c.command({"PING"}).str() == "PONG");
  CHECK(c.generation() == 2);
  CHECK(c.command({"CLIENT", "ID"}).integer() != id);
}

TEST_CASE("a reply later than socket_timeout is a TimeoutError, and the connection recovers") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  mpp::redis::ConnectionOptions o;
  o.socket_timeout = std::chrono::milliseconds(100);
  Connection c(url, o);
  std::string key = mpp::test::unique_name("never");
  std::vector<std::string_view> blpop{"BLPOP", key, "5"};
  CHECK_THROWS_AS(c.command(blpop), mpp::TimeoutError);
  CHECK(c.command({"PING"}).str() == "PONG");
  // The same command, announced as blocking, may take its time.
  std::vector<std::string_view> brief{"BLPOP", key, "0.2"};
  CHECK(c.blocking_command(brief, std::chrono::milliseconds(200)).is_nil());
}

TEST_CASE("a forked child never talks on its parent's socket") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  Connection c(url);
  auto parent_id = c.command({"CLIENT", "ID"}).integer();
  mpp::test::Child child([&](int) {
    auto id = c.command({"CLIENT", "ID"}).integer();
    _exit(id != parent_id ? 0 : 1);
  });
  CHECK(child.exit_code() == 0);
  CHECK(c.command({"CLIENT", "ID"}).integer() == parent_id);
}

TEST_CASE("database numbers select separate keyspaces") {
  std::string url = mpp::test::redis_url();
  if (url.empty()) return;
  Url u = Url::parse(url);
  Url other = u;
  other.db = u.db == 9 ? 8 : 9;
  Connection a(u), b(other);
  std::string key = mpp::test::unique_name("db");
  a.command({"SET", key, "a"});
  CHECK(b.command({"GET", key}).is_nil());
  a.command({"DEL", key});
  Url bad = u;
  bad.db = 100000;
  CHECK_THROWS_AS(Connection(bad), mpp::ValueError);
}

TEST_CASE("passwords: right one logs in, wrong or missing ones are AuthenticationErrors") {
  if (!mpp::test::have_redis_server()) return;
  RedisServer server({"--requirepass", "s3cret"});
  Connection ok(server.url(":s3cret"));
  CHECK(ok.command({"PING"}).str() == "PONG");
  try {
    Connection bad(server.url(":wrong"));
    FAIL("logged in with a wrong password");
  } catch (const mpp::AuthenticationError& e) {
    CHECK_THAT(e.what(), Catch::Contains("refused the login of the default user"));
    CHECK_THAT(e.what(), Catch::Contains("check the user and password"));
    CHECK_THAT(e.what(), !Catch::Contains("wrong"));
  }
  try {
    Connection none(server.url());
    FAIL("logged in without a password");
  } catch (const mpp::AuthenticationError& e) {
    CHECK_THAT(e.what(), Catch::Contains("needs a password"));
  }
}

TEST_CASE("ACL users log in with their name, and their permissions hold") {
  if (!mpp::test::have_redis_server()) return;
  RedisServer server({"--user", "alice", "on", ">wonder", "~*", "&*", "+@all",  //
                      "--user", "bob", "on", ">builder", "~bob:*", "+@read", "+@write",
                      "+@connection"});
  Connection alice(server.url("alice:wonder"));
  CHECK(alice.command({"ACL", "WHOAMI"}).str() == "alice");
  Connection bob(server.url("bob:builder"));
  bob.command({"SET", "bob:x", "1"});
  try {
    bob.command({"SET", "alice:x", "1"});
    FAIL("bob wrote outside his keys");
  } catch (const mpp::RemoteError& e) {
    CHECK(e.type_name() == "NOPERM");
  }
  try {
    Connection wrong(server.url("alice:builder"));
    FAIL("alice logged in with bob's password");
  } catch (const mpp::AuthenticationError& e) {
    CHECK_THAT(e.what(), Catch::Contains("user 'alice'"));
  }
  CHECK_THROWS_AS(Connection(server.url("carol:wonder")), mpp::AuthenticationError);
}

TEST_CASE("a restarted server is reconnected to on the next call") {
  if (!mpp::test::have_redis_server()) return;
  RedisServer server;
  Connection c(server.url());
  c.command({"SET", "k", "v"});
  server.restart();  // no persistence: the data are gone, the connection is dead
  CHECK_THROWS_AS(c.command({"GET", "k"}), mpp::ConnectionError);
  CHECK(c.command({"GET", "k"}).is_nil());
  CHECK(c.generation() == 2);
}
