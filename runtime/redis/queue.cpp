#include "mpp/redis/queue.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <random>
#include <thread>

namespace mpp::redis::detail {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Messages go in on the left (LPUSH) and come out on the right; a consumer's processing
// list gets them on its left, so its oldest unacknowledged message is at its right end.
// Putting messages back moves them from the processing list's left to the queue's right,
// so the oldest ends up first in line again.

// KEYS: queue. ARGV: maxsize, messages... -> new length, or -1 when they do not fit.
constexpr Script put_bounded{R"lua(
local n = #ARGV - 1
if redis.call('LLEN', KEYS[1]) + n > tonumber(ARGV[1]) then return -1 end
local len = 0
for i = 2, #ARGV do len = redis.call('LPUSH', KEYS[1], ARGV[i]) end
return len
)lua"};

// KEYS: queue, processing. ARGV: n -> up to n messages moved to processing, oldest first.
// Three commands whatever n (LRANGE, LTRIM, LPUSH) rather than n LMOVEs; the processing
// list ends as n LMOVEs would leave it.
constexpr Script take{R"lua(
local got = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
if #got == 0 then return got end
redis.call('LTRIM', KEYS[1], 0, -#got - 1)
local out = {}
for i = #got, 1, -1 do out[#out + 1] = got[i] end
redis.call('LPUSH', KEYS[2], unpack(out))
return out
)lua"};

// KEYS: processing. ARGV: messages, oldest first -> how many were still there and are now
// removed. When they are the oldest in flight (acknowledged in order, the usual case) they
// are the tail of the list and one LTRIM drops them; otherwise one LREM each.
constexpr Script ack{R"lua(
local n = #ARGV
local tail = redis.call('LRANGE', KEYS[1], -n, -1)
local in_order = #tail == n
for i = 1, n do
  if not in_order then break end
  if tail[n + 1 - i] ~= ARGV[i] then in_order = false end
end
if in_order then
  redis.call('LTRIM', KEYS[1], 0, -n - 1)
  return n
end
local removed = 0
for i = 1, n do removed = removed + redis.call('LREM', KEYS[1], -1, ARGV[i]) end
return removed
)lua"};

// KEYS: queue, consumers. ARGV: the queue's key prefix -> messages put back.
constexpr Script reap_script{R"lua(
local moved = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[1] .. ':lease:' .. id) == 0 then
    local proc = ARGV[1] .. ':processing:' .. id
    while redis.call('LMOVE', proc, KEYS[1], 'LEFT', 'RIGHT') do moved = moved + 1 end
    redis.call('SREM', KEYS[2], id)
  end
end
return moved
)lua"};

// KEYS: queue, processing, lease, consumers. ARGV: consumer id -> messages put back.
constexpr Script release{R"lua(
local moved = 0
while redis.call('LMOVE', KEYS[2], KEYS[1], 'LEFT', 'RIGHT') do moved = moved + 1 end
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[4], ARGV[1])
return moved
)lua"};

// After a dropped connection: the messages in this consumer's processing list that it
// does not know it has (a BLMOVE whose reply was lost) go back to the head of the queue.
// KEYS: queue, processing. ARGV: the messages the consumer holds -> messages put back.
constexpr Script reconcile_script{R"lua(
local keep = {}
for i = 1, #ARGV do keep[ARGV[i]] = (keep[ARGV[i]] or 0) + 1 end
local moved = 0
for _, m in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  if (keep[m] or 0) > 0 then
    keep[m] = keep[m] - 1
  else
    redis.call('LREM', KEYS[2], 1, m)
    redis.call('RPUSH', KEYS[1], m)
    moved = moved + 1
  end
end
return moved
)lua"};

// KEYS: queue, consumers. ARGV: prefix -> waiting + in flight everywhere.
constexpr Script unfinished{R"lua(
local n = redis.call('LLEN', KEYS[1])
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  n = n + redis.call('LLEN', ARGV[1] .. ':processing:' .. id)
end
return n
)lua"};

// KEYS: queue, consumers. ARGV: prefix.
constexpr Script clear_script{R"lua(
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('DEL', ARGV[1] .. ':processing:' .. id, ARGV[1] .. ':lease:' .. id)
end
redis.call('DEL', KEYS[1], KEYS[2])
return 0
)lua"};

constexpr std::size_t batch = 1000;  // messages per command in put_many / task_done(n)

std::string new_consumer_id() {
  static std::atomic<unsigned> counter{0};
  char host[256] = "host";
  gethostname(host, sizeof host - 1);
  std::random_device rd;
  char buf[64];
  std::snprintf(buf, sizeof buf, ":%d:%u:%08x", static_cast<int>(getpid()), counter++, rd());
  return host + std::string(buf);
}

// Sleeping between polls of a condition Redis cannot wait for (room in a bounded queue,
// an empty queue for join): a back-off, not a synchronisation.
void back_off(milliseconds& pause, Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  std::this_thread::sleep_for(std::max(milliseconds(0), std::min(pause, left)));
  pause = std::min(pause * 2, milliseconds(50));
}

// Runs f; when the connection dropped under it, `flag` is raised for the next call.
template <class F>
auto guarded(bool& flag, F&& f) {
  try {
    return f();
  } catch (const ConnectionError&) {
    flag = true;
    throw;
  } catch (const TimeoutError&) {
    flag = true;
    throw;
  }
}

}  // namespace

QueueCore::QueueCore(std::shared_ptr<Connection> conn, std::string name, QueueOptions options)
    : conn_(std::move(conn)), name_(std::move(name)), options_(options) {
  if (!conn_) throw ValueError("mpp::redis::Queue needs a Connection, got a null pointer");
  if (name_.empty()) throw ValueError("mpp::redis::Queue needs a non-empty name");
  if (options_.visibility_timeout < milliseconds(10)) {
    throw ValueError("mpp::redis::Queue: a visibility timeout under 10 ms would put back "
                     "messages of live consumers");
  }
  consumers_key_ = name_ + ":consumers";
  lease_ms_ = std::to_string(options_.visibility_timeout.count());
  generation_ = conn_->generation();
}

QueueCore::~QueueCore() {
  if (conn_) close();
}

void QueueCore::become_consumer() {
  if (!id_.empty() && id_pid_ == getpid()) return;
  // First get(), or a forked child using its parent's copy: a consumer of its own (the
  // parent's messages in flight stay the parent's).
  id_ = new_consumer_id();
  id_pid_ = getpid();
  processing_key_ = name_ + ":processing:" + id_;
  lease_key_ = name_ + ":lease:" + id_;
  unacked_.clear();
  lease_renewed_ = {};
  reaped_ = {};
}

// Called first by every operation of a consumer: after a dropped connection, or after
// another user of the shared connection saw it reconnect, repair this consumer's state.
void QueueCore::before_call() {
  if (id_.empty() || id_pid_ != getpid()) return;
  if (generation_ != conn_->generation()) needs_reconcile_ = true;
  if (needs_reconcile_) reconcile();
}

void QueueCore::reconcile() {
  std::vector<std::string_view> keys{name_, processing_key_};
  std::vector<std::string_view> held(unacked_.begin(), unacked_.end());
  guarded(needs_reconcile_, [&] {
    conn_->eval(reconcile_script, keys, held);
    return 0;
  });
  lease_renewed_ = {};  // the server may have lost the lease with its data
  generation_ = conn_->generation();
  needs_reconcile_ = false;
}

void QueueCore::append_lease() {
  conn_->append({"SET", lease_key_, "1", "PX", lease_ms_});
  conn_->append({"SADD", consumers_key_, id_});
}

void QueueCore::put(std::span<const std::string_view> messages, bool block,
                    std::optional<ms> timeout) {
  before_call();
  guarded(needs_reconcile_, [&] {
    if (options_.maxsize == 0) {
      std::vector<std::string_view> args;
      for (std::size_t i = 0; i < messages.size(); i += batch) {
        auto part = messages.subspan(i, std::min(batch, messages.size() - i));
        args.assign({"LPUSH", name_});
        args.insert(args.end(), part.begin(), part.end());
        conn_->append(args);
      }
      std::optional<Reply> error;
      while (conn_->pending() > 0) {
        Reply r = conn_->read_reply();
        if (r.is_error() && !error) error = r;
      }
      if (error) error->check();
      return 0;
    }
    if (messages.size() > options_.maxsize) {
      throw ValueError("put_many() of " + std::to_string(messages.size()) +
                       " messages into a queue of maxsize " + std::to_string(options_.maxsize) +
                       " can never fit");
    }
    std::string max = std::to_string(options_.maxsize);
    std::vector<std::string_view> args{max};
    args.insert(args.end(), messages.begin(), messages.end());
    std::string_view key = name_;
    auto deadline = !block ? Clock::now()
                    : timeout ? Clock::now() + *timeout
                              : Clock::time_point::max();
    auto pause = milliseconds(1);
    for (;;) {
      if (conn_->eval(put_bounded, std::span(&key, 1), args).integer() >= 0) return 0;
      if (Clock::now() >= deadline) {
        throw Full("mpp::redis::Queue '" + name_ + "' is full (maxsize " + max + ")");
      }
      back_off(pause, deadline);
    }
  });
}

std::vector<std::string> QueueCore::get(std::size_t max, bool block, std::optional<ms> timeout) {
  if (max == 0) throw ValueError("get_many(0): ask for at least one message");
  max = std::min(max, batch);  // a Lua script's unpack() has a limit
  become_consumer();
  before_call();
  return guarded(needs_reconcile_, [&] {
    const auto vt = options_.visibility_timeout;
    const auto start = Clock::now();
    const auto deadline = !block ? start
                          : timeout ? start + *timeout
                                    : Clock::time_point::max();
    std::vector<std::string_view> keys{name_, processing_key_};
    std::string rest_n = std::to_string(max - 1), all_n = std::to_string(max);
    std::vector<std::string> out;
    for (;;) {
      auto now = Clock::now();
      if (now - reaped_ >= vt / 2) {
        reap();
        now = Clock::now();
      }
      bool renew = now - lease_renewed_ >= vt / 4;
      if (renew) append_lease();
      std::size_t first = conn_->pending();
      bool blocking = now < deadline;
      if (blocking) {
        // Block in slices, so the lease is renewed and the dead are reaped meanwhile.
        auto slice = std::max(milliseconds(10), std::chrono::duration_cast<milliseconds>(vt / 4));
        if (deadline - now < slice) {
          slice = std::max(milliseconds(1),
                           std::chrono::ceil<milliseconds>(deadline - now));
        }
        char secs[32];
        std::snprintf(secs, sizeof secs, "%.3f", static_cast<double>(slice.count()) / 1000.0);
        conn_->append_blocking({"BLMOVE", name_, processing_key_, "RIGHT", "LEFT", secs}, slice);
        if (max > 1) {
          std::string_view a = rest_n;
          conn_->append_eval(take, keys, std::span(&a, 1));
        }
      } else if (max == 1) {
        conn_->append({"LMOVE", name_, processing_key_, "RIGHT", "LEFT"});
      } else {
        std::string_view a = all_n;
        conn_->append_eval(take, keys, std::span(&a, 1));
      }
      std::vector<Reply> replies;
      while (conn_->pending() > 0) replies.push_back(conn_->read_reply());
      for (auto& r : replies) r.check();
      if (renew) lease_renewed_ = now;
      for (std::size_t i = first; i < replies.size(); ++i) {
        const Reply& r = replies[i];
        if (r.type() == Reply::Type::string) {
          out.emplace_back(r.str());
        } else {
          for (std::size_t j = 0; j < r.size(); ++j) out.emplace_back(r[j].str());
        }
      }
      for (const auto& m : out) unacked_.push_back(m);
      if (!out.empty()) return out;
      if (!blocking || Clock::now() >= deadline) {
        throw Empty("mpp::redis::Queue '" + name_ + "' is empty");
      }
    }
  });
}

void QueueCore::task_done(std::size_t n) {
  if (n > unacked_.size() || id_.empty() || id_pid_ != getpid()) {
    throw ValueError("task_done() called more times than get() returned messages to this "
                     "consumer (" + std::to_string(in_flight()) + " in flight)");
  }
  before_call();
  guarded(needs_reconcile_, [&] {
    auto now = Clock::now();
    bool renew = now - lease_renewed_ >= options_.visibility_timeout / 4;
    if (renew) append_lease();
    std::size_t done = 0;
    while (done < n) {
      std::size_t k = std::min(batch, n - done);
      if (k == 1) {
        conn_->append({"LREM", processing_key_, "-1", unacked_[done]});
      } else {
        std::vector<std::string_view> msgs(unacked_.begin() + static_cast<long>(done),
                                           unacked_.begin() + static_cast<long>(done + k));
        std::string_view key = processing_key_;
        conn_->append_eval(ack, std::span(&key, 1), msgs);
      }
      done += k;
    }
    std::vector<Reply> replies;
    while (conn_->pending() > 0) replies.push_back(conn_->read_reply());
    for (auto& r : replies) r.check();
    if (renew) lease_renewed_ = now;
    unacked_.erase(unacked_.begin(), unacked_.begin() + static_cast<long>(n));
    return 0;
  });
}

void QueueCore::heartbeat() {
  if (id_.empty() || id_pid_ != getpid()) return;  // not a consumer: no lease to renew
  before_call();
  guarded(needs_reconcile_, [&] {
    auto now = Clock::now();
    append_lease();
    conn_->read_reply().check();
    conn_->read_reply().check();
    lease_renewed_ = now;
    return 0;
  });
}

std::size_t QueueCore::reap() {
  std::vector<std::string_view> keys{name_, consumers_key_};
  std::string_view prefix = name_;
  auto n = guarded(needs_reconcile_, [&] {
    return conn_->eval(reap_script, keys, std::span(&prefix, 1)).integer();
  });
  reaped_ = Clock::now();
  return static_cast<std::size_t>(n);
}

std::size_t QueueCore::qsize() {
  return static_cast<std::size_t>(
      guarded(needs_reconcile_, [&] { return conn_->command({"LLEN", name_}).integer(); }));
}

std::size_t QueueCore::unfinished_tasks() {
  std::vector<std::string_view> keys{name_, consumers_key_};
  std::string_view prefix = name_;
  return static_cast<std::size_t>(guarded(needs_reconcile_, [&] {
    return conn_->eval(unfinished, keys, std::span(&prefix, 1)).integer();
  }));
}

void QueueCore::join() {
  auto pause = milliseconds(1);
  while (unfinished_tasks() > 0) {
    // Reap as a consumer would, so that the messages of dead consumers go back even when
    // the joiner is the only one left to notice.
    if (Clock::now() - reaped_ >= options_.visibility_timeout / 2) reap();
    back_off(pause, Clock::time_point::max());
  }
}

void QueueCore::close() noexcept {
  if (id_.empty() || id_pid_ != getpid()) return;
  try {
    if (conn_->connected() && conn_->pending() == 0) {
      std::vector<std::string_view> keys{name_, processing_key_, lease_key_, consumers_key_};
      std::string_view id = id_;
      conn_->eval(release, keys, std::span(&id, 1));
    }
  } catch (...) {
    // The lease expires instead, and another consumer puts the messages back.
  }
  unacked_.clear();
  id_.clear();
}

void QueueCore::clear() {
  std::vector<std::string_view> keys{name_, consumers_key_};
  std::string_view prefix = name_;
  guarded(needs_reconcile_, [&] {
    conn_->eval(clear_script, keys, std::span(&prefix, 1));
    return 0;
  });
  unacked_.clear();
}

}  // namespace mpp::redis::detail
