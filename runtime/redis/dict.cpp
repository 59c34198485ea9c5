#include "mpp/redis/dict.hpp"

namespace mpp::redis::detail {
namespace {

constexpr std::size_t batch = 1000;  // pairs per HSET in update()

std::optional<std::string> optional_string(const Reply& r) {
  if (r.is_nil()) return std::nullopt;
  return std::string(r.str());
}

std::vector<std::string> strings(const Reply& r) {
  std::vector<std::string> out;
  out.reserve(r.size());
  for (std::size_t i = 0; i < r.size(); ++i) out.emplace_back(r[i].str());
  return out;
}

// Reads the replies of what was appended; throws the first error reply, after all were read
// (so the connection stays in step).
std::vector<Reply> read_all(Connection& c) {
  std::vector<Reply> replies;
  while (c.pending() > 0) replies.push_back(c.read_reply());
  for (auto& r : replies) r.check();
  return replies;
}

}  // namespace

DictCore::DictCore(std::shared_ptr<Connection> conn, std::string name)
    : conn_(std::move(conn)), name_(std::move(name)) {
  if (!conn_) throw ValueError("mpp::redis::Dict needs a Connection, got a null pointer");
  if (name_.empty()) throw ValueError("mpp::redis::Dict needs a non-empty name");
}

void DictCore::set(std::string_view key, std::string_view value) {
  conn_->command({"HSET", name_, key, value});
}

std::optional<std::string> DictCore::get(std::string_view key) {
  return optional_string(conn_->command({"HGET", name_, key}));
}

bool DictCore::contains(std::string_view key) {
  return conn_->command({"HEXISTS", name_, key}).integer() == 1;
}

bool DictCore::erase(std::string_view key) {
  return conn_->command({"HDEL", name_, key}).integer() == 1;
}

// MULTI/EXEC without WATCH: the two commands run as one step, in one round trip.
std::optional<std::string> DictCore::pop(std::string_view key) {
  conn_->append({"MULTI"});
  conn_->append({"HGET", name_, key});
  conn_->append({"HDEL", name_, key});
  conn_->append({"EXEC"});
  auto r = read_all(*conn_);
  return optional_string(r.back()[0]);
}

std::string DictCore::setdefault(std::string_view key, std::string_view value) {
  conn_->append({"MULTI"});
  conn_->append({"HSETNX", name_, key, value});
  conn_->append({"HGET", name_, key});
  conn_->append({"EXEC"});
  auto r = read_all(*conn_);
  return std::string(r.back()[1].str());
}

void DictCore::update(std::span<const std::string_view> kv) {
  std::vector<std::string_view> args;
  for (std::size_t i = 0; i < kv.size(); i += 2 * batch) {
    auto part = kv.subspan(i, std::min(2 * batch, kv.size() - i));
    args.assign({"HSET", name_});
    args.insert(args.end(), part.begin(), part.end());
    conn_->append(args);
  }
  read_all(*conn_);
}

std::vector<std::optional<std::string>> DictCore::get_many(std::span<const std::string_view> keys) {
  std::vector<std::string_view> args{"HMGET", name_};
  args.insert(args.end(), keys.begin(), keys.end());
  Reply r = conn_->command(args);
  std::vector<std::optional<std::string>> out;
  out.reserve(r.size());
  for (std::size_t i = 0; i < r.size(); ++i) out.push_back(optional_string(r[i]));
  return out;
}

std::size_t DictCore::size() {
  return static_cast<std::size_t>(conn_->command({"HLEN", name_}).integer());
}

void DictCore::clear() { conn_->command({"DEL", name_}); }

std::vector<std::string> DictCore::keys() { return strings(conn_->command({"HKEYS", name_})); }
std::vector<std::string> DictCore::values() { return strings(conn_->command({"HVALS", name_})); }
std::vector<std::string> DictCore::items() { return strings(conn_->command({"HGETALL", name_})); }

// Optimistic locking: WATCH the hash, read, compute, then MULTI/HSET/EXEC, which Redis
// refuses (a nil reply) if any client changed the hash after the WATCH; then again.
// A Lua script would need the function on the server; fn is C++, so it runs here.
std::string DictCore::modify(std::string_view key,
                             const std::function<std::string(const std::optional<std::string>&)>& fn) {
  for (;;) {
    conn_->append({"WATCH", name_});
    // A reconnect between WATCH and EXEC would lose the WATCH: then start again.
    const auto generation = conn_->generation();
    conn_->append({"HGET", name_, key});
    auto r = read_all(*conn_);
    std::optional<std::string> old = optional_string(r[1]);
    std::string now;
    try {
      now = fn(old);
    } catch (...) {
      conn_->command({"UNWATCH"});
      throw;
    }
    if (conn_->generation() != generation || !conn_->connected()) continue;
    conn_->append({"MULTI"});
    conn_->append({"HSET", name_, key, now});
    conn_->append({"EXEC"});
    auto e = read_all(*conn_);
    if (!e.back().is_nil()) return now;
  }
}

}  // namespace mpp::redis::detail
