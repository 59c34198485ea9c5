#include "mpp/redis/connection.hpp"

#include <hiredis/hiredis.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <thread>
#include <utility>

namespace mpp::redis {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

const redisReply* node_of(const void* p) { return static_cast<const redisReply*>(p); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s, const char* part) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    int hi = i + 2 < s.size() ? hex_value(s[i + 1]) : -1;
    int lo = i + 2 < s.size() ? hex_value(s[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      throw ValueError(std::string("bad Redis URL: the ") + part +
                       " has a '%' not followed by two hex digits");
    }
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

int parse_number(std::string_view s, int lo, int hi, const std::string& what,
                 const std::string& shown) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi) {
    throw ValueError("bad Redis URL '" + shown + "': the " + what + " '" + std::string(s) +
                     "' is not a number from " + std::to_string(lo) + " to " +
                     std::to_string(hi));
  }
  return v;
}

timeval to_timeval(milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

}  // namespace

// ---------------------------------------------------------------------------------- Url

Url Url::parse(std::string_view url) {
  constexpr std::string_view scheme = "redis://";
  // Until the credentials are split off, a message may only show what cannot be secret.
  if (!starts_with(url, scheme)) {
    throw ValueError("bad Redis URL: it must start with 'redis://' "
                     "(redis://[[user]:password@]host[:port][/db])");
  }
  std::string_view rest = url.substr(scheme.size());
  Url u;
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  auto at = authority.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view cred = authority.substr(0, at);
    authority = authority.substr(at + 1);
    auto colon = cred.find(':');
    if (colon == std::string_view::npos) {
      // redis://secret@host is how some clients spell a password alone; Python's
      // redis-py reads it as a user name. Refuse it rather than guess.
      throw ValueError("bad Redis URL: credentials must be 'user:password@' or ':password@' "
                       "(the ':' is missing)");
    }
    u.user = percent_decode(cred.substr(0, colon), "user name");
    u.password = percent_decode(cred.substr(colon + 1), "password");
  }
  std::string shown = "redis://" + std::string(u.user.empty() && u.password.empty() ? "" : "***@") +
                      std::string(rest.substr(at == std::string_view::npos ? 0 : at + 1));
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) {
      throw ValueError("bad Redis URL '" + shown + "': an IPv6 address needs its closing ']'");
    }
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        throw ValueError("bad Redis URL '" + shown + "': expected ':port' after ']'");
      }
      port = after.substr(1);
      if (port.empty()) throw ValueError("bad Redis URL '" + shown + "': the port is empty");
    }
  } else {
    auto colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) throw ValueError("bad Redis URL '" + shown + "': the port is empty");
    }
  }
  if (u.host.empty()) throw ValueError("bad Redis URL '" + shown + "': the host is missing");
  if (u.host.find_first_of("/?#@ ") != std::string::npos) {
    throw ValueError("bad Redis URL '" + shown + "': the host '" + u.host + "' is not valid");
  }
  if (!port.empty()) u.port = parse_number(port, 1, 65535, "port", shown);
  if (!path.empty()) u.db = parse_number(path, 0, 1 << 20, "database number", shown);
  return u;
}

std::string Url::redacted() const {
  std::string s = "redis://";
  if (!user.empty() || !password.empty()) s += user + (password.empty() ? "@" : ":***@");
  s += host.find(':') != std::string::npos ? "[" + host + "]" : host;
  s += ":" + std::to_string(port) + "/" + std::to_string(db);
  return s;
}

// -------------------------------------------------------------------------------- Reply

Reply::Type Reply::type() const noexcept {
  switch (node_of(node_)->type) {
    case REDIS_REPLY_STRING:
      return Type::string;
    case REDIS_REPLY_ARRAY:
      return Type::array;
    case REDIS_REPLY_INTEGER:
      return Type::integer;
    case REDIS_REPLY_STATUS:
      return Type::status;
    case REDIS_REPLY_ERROR:
      return Type::error;
    default:
      return Type::nil;
  }
}

long long Reply::integer() const {
  if (node_of(node_)->type != REDIS_REPLY_INTEGER) {
    check();
    throw ValueError("Redis replied with something other than an integer");
  }
  return node_of(node_)->integer;
}

std::string_view Reply::str() const {
  auto* r = node_of(node_);
  if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS &&
      r->type != REDIS_REPLY_ERROR) {
    throw ValueError("Redis replied with something other than a string");
  }
  return {r->str, r->len};
}

std::size_t Reply::size() const noexcept {
  auto* r = node_of(node_);
  return r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
}

Reply Reply::operator[](std::size_t i) const {
  if (i >= size()) {
    throw IndexError("element " + std::to_string(i) + " of a Redis reply of " +
                     std::to_string(size()) + " elements");
  }
  return Reply(owner_, node_of(node_)->element[i]);
}

const Reply& Reply::check() const {
  auto* r = node_of(node_);
  if (r->type == REDIS_REPLY_ERROR) {
    std::string_view s(r->str, r->len);
    auto sp = s.find(' ');
    std::string code(s.substr(0, sp));
    std::string msg(sp == std::string_view::npos ? s : s.substr(sp + 1));
    throw RemoteError(code, msg);
  }
  return *this;
}

// --------------------------------------------------------------------------- Connection

Connection::Connection(std::string_view url, ConnectionOptions options)
    : Connection(Url::parse(url), options) {}

Connection::Connection(Url url, ConnectionOptions options)
    : url_(std::move(url)), options_(options) {
  connect_once();
}

Connection::~Connection() { drop(); }

Connection::Connection(Connection&& o) noexcept
    : url_(std::move(o.url_)),
      options_(o.options_),
      ctx_(std::exchange(o.ctx_, nullptr)),
      owner_pid_(o.owner_pid_),
      pending_(std::exchange(o.pending_, 0)),
      generation_(o.generation_),
      current_extra_(o.current_extra_),
      shas_(std::move(o.shas_)) {}

Connection& Connection::operator=(Connection&& o) noexcept {
  if (this != &o) {
    drop();
    url_ = std::move(o.url_);
    options_ = o.options_;
    ctx_ = std::exchange(o.ctx_, nullptr);
    owner_pid_ = o.owner_pid_;
    pending_ = std::exchange(o.pending_, 0);
    generation_ = o.generation_;
    current_extra_ = o.current_extra_;
    shas_ = std::move(o.shas_);
  }
  return *this;
}

void Connection::drop() noexcept {
  if (ctx_) redisFree(ctx_);  // in a forked child this closes only the child's copy
  ctx_ = nullptr;
  pending_ = 0;
  current_extra_ = milliseconds(-1);
  shas_.clear();
}

// One attempt: TCP connect, AUTH, SELECT, PING. Throws ConnectionError,
// AuthenticationError, or RemoteError("LOADING") while the server loads its data.
void Connection::connect_once() {
  drop();
  redisContext* c = redisConnectWithTimeout(url_.host.c_str(), url_.port,
                                            to_timeval(options_.connect_timeout));
  if (c == nullptr) throw ConnectionError(ENOMEM, "cannot allocate a Redis connection");
  if (c->err) {
    std::string why = c->errstr;
    int err = errno;
    redisFree(c);
    throw ConnectionError(err, "cannot connect to Redis at " + url_.redacted() + ": " + why +
                                   " (is redis-server running there?)");
  }
  ctx_ = c;
  owner_pid_ = getpid();
  ++generation_;
  set_timeout(milliseconds(0));

  std::vector<std::string_view> auth;
  if (!url_.password.empty()) {
    auth = {"AUTH"};
    if (!url_.user.empty()) auth.push_back(url_.user);
    auth.push_back(url_.password);
    append(auth);
  }
  std::string db = std::to_string(url_.db);
  if (url_.db != 0) append({"SELECT", db});
  append({"PING"});
  std::vector<Reply> replies;
  while (pending_ > 0) replies.push_back(read_reply());
  const std::string who = url_.user.empty() ? "the default user" : "user '" + url_.user + "'";
  for (std::size_t i = 0; i < replies.size(); ++i) {
    if (!replies[i].is_error()) continue;
    std::string_view e = replies[i].str();
    drop();
    if (i == 0 && !auth.empty()) {
      throw AuthenticationError("Redis at " + url_.redacted() + " refused the login of " + who +
                                ": " + std::string(e) +
                                " (check the user and password in the URL)");
    }
    if (starts_with(e, "NOAUTH")) {
      throw AuthenticationError("Redis at " + url_.redacted() +
                                " needs a password: give it in the URL, "
                                "redis://[user]:password@host:port/db");
    }
    if (i + 1 < replies.size()) {
      throw ValueError("Redis at " + url_.redacted() + " refused database " + db + ": " +
                       std::string(e));
    }
    replies[i].check();  // LOADING and the like: RemoteError
  }
}

void Connection::reconnect() {
  auto deadline = Clock::now() + options_.reconnect_timeout;
  auto pause = milliseconds(10);
  for (;;) {
    try {
      connect_once();
      return;
    } catch (const ConnectionError&) {
      if (Clock::now() + pause >= deadline) throw;
    } catch (const RemoteError& e) {
      if (e.type_name() != "LOADING" || Clock::now() + pause >= deadline) throw;
    }
    // Waiting for a server to come back: a back-off, not a synchronisation.
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, milliseconds(200));
  }
}

void Connection::ensure_connected() {
  if (ctx_ && owner_pid_ != getpid()) {
    // A forked child: forget the parent's socket without a word on it.
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  if (!ctx_) reconnect();
}

void Connection::fail(const char* doing) {
  int err = errno;
  int kind = ctx_ ? ctx_->err : REDIS_ERR_OTHER;
  std::string why = ctx_ ? ctx_->errstr : "not connected";
  drop();
  const std::string tail =
      "; the command in flight may or may not have been applied. The next call reconnects.";
  if (kind == REDIS_ERR_IO && (err == EAGAIN || err == EWOULDBLOCK)) {
    throw TimeoutError("Redis at " + url_.redacted() + " did not reply in time while " + doing +
                       tail);
  }
  if (kind != REDIS_ERR_IO) err = ECONNRESET;
  throw ConnectionError(err, "lost the connection to Redis at " + url_.redacted() + " while " +
                                 doing + " (" + why + ")" + tail);
}

void Connection::set_timeout(milliseconds extra) {
  if (extra == current_extra_) return;
  milliseconds t = options_.socket_timeout.count() == 0 ? milliseconds(0)
                                                        : options_.socket_timeout + extra;
  if (redisSetTimeout(ctx_, to_timeval(t)) != REDIS_OK) fail("setting the socket timeout");
  current_extra_ = extra;
}

void Connection::append(Args args) {
  if (pending_ == 0) ensure_connected();
  argv_.clear();
  argvlen_.clear();
  for (auto a : args) {
    argv_.push_back(a.data());
    argvlen_.push_back(a.size());
  }
  if (redisAppendCommandArgv(ctx_, static_cast<int>(args.size()), argv_.data(),
                             argvlen_.data()) != REDIS_OK) {
    fail("queueing a command");
  }
  ++pending_;
}

void Connection::append_blocking(Args args, milliseconds block) {
  append(args);
  if (block > current_extra_) set_timeout(block);
}

bool Connection::connected() const noexcept { return ctx_ && owner_pid_ == getpid(); }

Reply Connection::take_reply() {
  void* raw = nullptr;
  if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) fail("waiting for a reply");
  --pending_;
  std::shared_ptr<const void> owner(raw, [](const void* p) {
    freeReplyObject(const_cast<void*>(p));
  });
  return Reply(owner, raw);
}

Reply Connection::read_reply() {
  if (pending_ == 0) throw ValueError("read_reply() with no command appended");
  Reply r = take_reply();
  if (pending_ == 0) set_timeout(milliseconds(0));
  if (r.is_error() && starts_with(r.str(), "NOSCRIPT")) shas_.clear();
  return r;
}

Reply Connection::command(Args args) {
  if (pending_ != 0) throw ValueError("command() while pipelined replies are unread");
  append(args);
  Reply r = take_reply();
  if (r.is_error() && starts_with(r.str(), "NOAUTH")) {
    throw AuthenticationError("Redis at " + url_.redacted() +
                              " needs a password: give it in the URL, "
                              "redis://[user]:password@host:port/db");
  }
  r.check();
  return r;
}

Reply Connection::blocking_command(Args args, milliseconds block) {
  if (pending_ != 0) throw ValueError("blocking_command() while pipelined replies are unread");
  ensure_connected();
  set_timeout(block);
  Reply r = command(args);
  set_timeout(milliseconds(0));
  return r;
}

const std::string& Connection::script_sha(const Script& script) {
  auto it = shas_.find(script.source.data());
  if (it != shas_.end()) return it->second;
  Reply r = command({"SCRIPT", "LOAD", script.source});
  return shas_[script.source.data()] = std::string(r.str());
}

namespace {
std::vector<std::string_view> eval_args(std::string_view head, std::string_view body,
                                        std::span<const std::string_view> keys,
                                        std::span<const std::string_view> args,
                                        std::string& nkeys) {
  nkeys = std::to_string(keys.size());
  std::vector<std::string_view> v;
  v.reserve(3 + keys.size() + args.size());
  v.push_back(head);
  v.push_back(body);
  v.push_back(nkeys);
  v.insert(v.end(), keys.begin(), keys.end());
  v.insert(v.end(), args.begin(), args.end());
  return v;
}
}  // namespace

Reply Connection::eval(const Script& script, std::span<const std::string_view> keys,
                       std::span<const std::string_view> args) {
  std::string nkeys;
  for (int attempt = 0;; ++attempt) {
    ensure_connected();
    std::string sha = script_sha(script);
    try {
      return command(eval_args("EVALSHA", sha, keys, args, nkeys));
    } catch (const RemoteError& e) {
      // Someone flushed the script cache: load it again, once.
      if (e.type_name() != "NOSCRIPT" || attempt > 0) throw;
      shas_.clear();
    }
  }
}

void Connection::append_eval(const Script& script, std::span<const std::string_view> keys,
                             std::span<const std::string_view> args) {
  std::string nkeys;
  if (pending_ == 0) {
    ensure_connected();
    std::string sha = script_sha(script);
    append(eval_args("EVALSHA", sha, keys, args, nkeys));
  } else {
    auto it = shas_.find(script.source.data());
    if (it != shas_.end()) {
      append(eval_args("EVALSHA", it->second, keys, args, nkeys));
    } else {
      append(eval_args("EVAL", script.source, keys, args, nkeys));
    }
  }
}

}  // namespace mpp::redis
