// A connection to one Redis server, the transport under mpp::redis::Queue and
// mpp::redis::Dict (include/mpp/redis/queue.hpp, dict.hpp). Link mpp::redis.
//
//   mpp::redis::Connection c("redis://user:secret@10.0.0.5:6379/2");
//   c.command({"SET", "k", "v"});
//
// Failures and what holds after them:
//   - A bad URL is a ValueError (the message never shows the password).
//   - A server that cannot be reached is a ConnectionError; a refused login (wrong password,
//     unknown or disabled ACL user, a password needed but none given) an AuthenticationError.
//   - When the connection drops (the server restarted, the network broke, a reply did not
//     come within socket_timeout) the call in flight throws ConnectionError (or TimeoutError
//     for a reply that did not come in time); that command may or may not have been applied.
//     The next call reconnects, retrying for up to reconnect_timeout while the server is
//     down or still loading its data, and goes on. Nothing is retried behind the caller's
//     back: whether to repeat a command is the caller's decision.
//   - An error reply of Redis (WRONGTYPE, OOM, ...) is a RemoteError whose type_name() is
//     Redis's error code; the connection stays usable.
//
// A Connection is used by one thread at a time. A child forked from the owner never shares
// the parent's socket: its first call opens a connection of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <unordered_map>
#include <vector>

#include "mpp/errors.hpp"

struct redisContext;

namespace mpp::redis {

// Where a Redis server is and whom to log in as:
//   redis://[[user]:password@]host[:port][/db]
// user and password may be percent-encoded; host may be a name, an IPv4 address or an IPv6
// address in brackets; port defaults to 6379 and db to 0.
struct Url {
  std::string user;      // ACL user; empty means Redis's "default" user
  std::string password;  // empty means no AUTH
  std::string host;      // a name, an IPv4 address, or an IPv6 address (without brackets)
  int port = 6379;       // TCP port
  int db = 0;            // the database SELECTed after login

  // The parts of `url`. Throws ValueError naming what is wrong (never showing the password).
  static Url parse(std::string_view url);
  // The URL with the password replaced by "***", for messages and logs.
  std::string redacted() const;
};

// One reply of Redis: a string, an array of replies, an integer, nil, a status or an error.
// Cheap to copy; copies and elements share one reply tree.
class Reply {
 public:
  // The kinds of reply Redis's protocol has.
  enum class Type { string, array, integer, nil, status, error };

  // This reply's kind; is_nil() and is_error() test for the two a caller checks most.
  Type type() const noexcept;
  bool is_nil() const noexcept { return type() == Type::nil; }
  bool is_error() const noexcept { return type() == Type::error; }
  // The value of an integer reply; ValueError for any other type.
  long long integer() const;
  // The bytes of a string, status or error reply; ValueError for any other type. The view
  // lives as long as this Reply (or any copy of it).
  std::string_view str() const;
  // The number of elements of an array reply, 0 for any other type.
  std::size_t size() const noexcept;
  // Element i of an array reply; IndexError past the end.
  Reply operator[](std::size_t i) const;
  // Throws RemoteError(code, message) if this is an error reply ("WRONGTYPE ..." gives
  // type_name() "WRONGTYPE"); returns *this otherwise.
  const Reply& check() const;

 private:
  friend class Connection;
  Reply(std::shared_ptr<const void> owner, const void* node)
      : owner_(std::move(owner)), node_(node) {}
  std::shared_ptr<const void> owner_;
  const void* node_ = nullptr;
};

// A Lua script run with EVALSHA: loaded once per connection (and again after the server
// lost it), so only its SHA1 travels with each call. The source must outlive the Script.
struct Script {
  std::string_view source;  // the Lua source
};

// How long a Connection waits for the server.
struct ConnectionOptions {
  // How long one attempt to connect may take.
  std::chrono::milliseconds connect_timeout{5000};
  // How long a reconnect keeps trying while the server is down or loading its data.
  std::chrono::milliseconds reconnect_timeout{10000};
  // The longest wait for a reply, on top of the time a blocking command was asked to
  // block; 0 waits forever.
  std::chrono::milliseconds socket_timeout{30000};
};

// A connection to one Redis server (see the top of this file for what holds after failures).
// Move-only; used by one thread at a time.
class Connection {
 public:
  // A command and its arguments, each a binary-safe string.
  using Args = std::span<const std::string_view>;

  // Connects and logs in now (one attempt). Throws ValueError for a bad URL,
  // ConnectionError when the server cannot be reached, AuthenticationError when it
  // refuses the login.
  explicit Connection(std::string_view url, ConnectionOptions options = {});
  explicit Connection(Url url, ConnectionOptions options = {});
  ~Connection();
  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends one command and returns its reply. Throws RemoteError for an error reply (the
  // connection stays usable), ConnectionError/TimeoutError when the connection dropped
  // (see the header comment).
  Reply command(Args args);
  Reply command(std::initializer_list<std::string_view> args) {
    return command(Args(args.begin(), args.size()));
  }
  // command() for a command that blocks on the server for up to `block` (BLMOVE, BLPOP):
  // the reply may take that much longer than socket_timeout.
  Reply blocking_command(Args args, std::chrono::milliseconds block);

  // Pipelining: append() queues commands, read_reply() sends what is queued and reads the
  // replies in order — one round trip for the lot. Error replies are returned, not thrown.
  // If the connection drops, every pending reply is lost and read_reply() throws.
  void append(Args args);
  void append(std::initializer_list<std::string_view> args) {
    append(Args(args.begin(), args.size()));
  }
  // append() for a command that blocks on the server for up to `block`: the replies of
  // this batch may take that much longer than socket_timeout.
  void append_blocking(Args args, std::chrono::milliseconds block);
  void append_blocking(std::initializer_list<std::string_view> args,
                       std::chrono::milliseconds block) {
    append_blocking(Args(args.begin(), args.size()), block);
  }
  Reply read_reply();
  std::size_t pending() const noexcept { return pending_; }
  // Whether a connection is open now (a dropped one is remade by the next call).
  bool connected() const noexcept;

  // Runs `script` (EVALSHA, loading it when the server does not know it).
  Reply eval(const Script& script, std::span<const std::string_view> keys,
             std::span<const std::string_view> args);
  // eval() pipelined: queued like append(); its reply is read with read_reply().
  void append_eval(const Script& script, std::span<const std::string_view> keys,
                   std::span<const std::string_view> args);

  // Counts connections made: 1 after the constructor, +1 at each reconnect. Users keeping
  // per-connection state on the server (Queue's consumer lease) check it.
  std::uint64_t generation() const noexcept { return generation_; }
  const Url& url() const noexcept { return url_; }

 private:
  void ensure_connected();
  void connect_once();
  void reconnect();
  void drop() noexcept;
  [[noreturn]] void fail(const char* doing);
  void set_timeout(std::chrono::milliseconds extra);
  const std::string& script_sha(const Script& script);
  Reply take_reply();

  Url url_;
  ConnectionOptions options_;
  redisContext* ctx_ = nullptr;
  pid_t owner_pid_ = 0;
  std::size_t pending_ = 0;
  std::uint64_t generation_ = 0;
  std::chrono::milliseconds current_extra_{-1};
  std::unordered_map<const char*, std::string> shas_;
  std::vector<const char*> argv_;
  std::vector<std::size_t> argvlen_;
};

}  // namespace mpp::redis
