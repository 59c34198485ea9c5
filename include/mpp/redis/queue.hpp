// mpp::redis::Queue<T>: mpp::Queue's API on a Redis list, for producers and consumers on
// several machines. Link mpp::redis.
//
//   auto conn = std::make_shared<mpp::redis::Connection>("redis://10.0.0.5:6379/0");
//   mpp::redis::Queue<Job> tasks(conn, "tasks");
//   tasks.put(job);                       // any machine
//   Job j = tasks.get();                  // any machine
//   run(j);
//   tasks.task_done();                    // acknowledge: j is done, never delivered again
//
// Delivery is AT-LEAST-ONCE and a message is never lost:
//   - get() moves a message atomically (BLMOVE) from the queue into this consumer's own
//     processing list on the server; task_done() acknowledges the oldest message this
//     consumer got and has not acknowledged, and only then is it removed.
//   - Every consumer holds a lease key on the server, renewed by its calls (and by
//     heartbeat()) and expiring after QueueOptions::visibility_timeout. When a consumer
//     dies (SIGKILL, a lost machine) its lease expires, and the next get() of any consumer
//     (or reap()) puts that consumer's unacknowledged messages back at the head of the
//     queue, atomically (a Lua script), so each is delivered again exactly once.
//   - So a message may be delivered twice: when a consumer died after doing the work but
//     before task_done(), or when a live consumer went quiet longer than the visibility
//     timeout (call heartbeat() during long tasks). Make processing idempotent.
//   - A connection that drops inside get() (the server restarted) throws ConnectionError;
//     a message the server had already moved to this consumer is noticed at the next call
//     and put back, so it is not stranded.
//   - "Never lost" holds as far as Redis keeps what it acknowledged: with persistence
//     (appendonly yes, appendfsync always) across restarts; without persistence a restart
//     empties the queue.
//
// Python's queue.Queue names: put, put_nowait, get, get_nowait, qsize, empty, full,
// task_done, join; Empty and Full from mpp/errors.hpp. put_many and get_many batch many
// messages into one round trip. Values are encoded portably (detail/portable_codec.hpp),
// so producers and consumers may run on different machines and architectures.
//
// Keys used for a queue named Q: Q (the waiting messages, a list), Q:consumers (a set),
// Q:processing:<consumer> (a list per consumer), Q:lease:<consumer>. A Queue object is
// one consumer and is used by one thread at a time; a forked child that uses a copy is a
// consumer of its own. One Redis server, not Redis Cluster (the scripts reach keys of
// several consumers).
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include "mpp/detail/portable_codec.hpp"
#include "mpp/errors.hpp"
#include "mpp/redis/connection.hpp"

namespace mpp::redis {

// The options of a redis::Queue.
struct QueueOptions {
  // As Python's Queue(maxsize): put() blocks (polling) and put_nowait() raises Full while
  // this many messages wait. 0 = no bound. Each producer enforces its own value.
  std::size_t maxsize = 0;
  // A consumer that makes no call for this long is presumed dead and its unacknowledged
  // messages go back to the queue. Longer than any task, or call heartbeat() meanwhile.
  std::chrono::milliseconds visibility_timeout{30000};
};

namespace detail {

// The part of Queue that does not depend on T: messages as bytes. runtime/redis/queue.cpp.
class QueueCore {
 public:
  using ms = std::chrono::milliseconds;
  QueueCore(std::shared_ptr<Connection> conn, std::string name, QueueOptions options);
  ~QueueCore();
  QueueCore(QueueCore&&) noexcept = default;
  QueueCore(const QueueCore&) = delete;

  // `timeout` empty = wait forever; block false = no wait at all.
  void put(std::span<const std::string_view> messages, bool block, std::optional<ms> timeout);
  std::vector<std::string> get(std::size_t max, bool block, std::optional<ms> timeout);
  void task_done(std::size_t n);
  void join();
  std::size_t qsize();
  std::size_t maxsize() const noexcept { return options_.maxsize; }
  void heartbeat();
  std::size_t reap();
  std::size_t unfinished_tasks();
  void close() noexcept;
  void clear();
  std::size_t in_flight() const noexcept { return unacked_.size(); }
  const std::string& name() const noexcept { return name_; }
  Connection& connection() const noexcept { return *conn_; }

 private:
  void become_consumer();
  void before_call();
  void append_lease();
  void reconcile();

  std::shared_ptr<Connection> conn_;
  std::string name_;
  QueueOptions options_;
  std::string consumers_key_;
  std::string id_;  // this consumer, "" until its first get()
  std::string processing_key_;
  std::string lease_key_;
  std::string lease_ms_;
  pid_t id_pid_ = 0;
  std::uint64_t generation_ = 0;
  bool needs_reconcile_ = false;
  std::chrono::steady_clock::time_point lease_renewed_{};
  std::chrono::steady_clock::time_point reaped_{};
  std::deque<std::string> unacked_;
};

template <class Rep, class Period>
std::chrono::milliseconds to_ms(std::chrono::duration<Rep, Period> d) {
  auto m = std::chrono::ceil<std::chrono::milliseconds>(d);
  return m.count() < 0 ? std::chrono::milliseconds(0) : m;
}

}  // namespace detail

// mpp::Queue's API on a Redis list, with at-least-once delivery (see the top of this file).
// A handle: the queue itself lives on the server.
template <class T>
class Queue {
 public:
  // A handle on the queue `name` of the server behind `conn` (shared with other Queues
  // and Dicts of this thread). Makes no call to the server.
  Queue(std::shared_ptr<Connection> conn, std::string name, QueueOptions options = {})
      : core_(std::move(conn), std::move(name), options) {}
  // The same on a connection of its own to `url` (connects now; see Connection).
  Queue(std::string_view url, std::string name, QueueOptions options = {})
      : core_(std::make_shared<Connection>(url), std::move(name), options) {}

  // Appends `value`, waiting while the queue is full (maxsize). Throws ConnectionError
  // when the connection dropped (the message may or may not have been added).
  void put(const T& value) { put_one(value, true, std::nullopt); }
  // Waits at most `timeout` for room; Full if there was none.
  template <class Rep, class Period>
  void put(const T& value, std::chrono::duration<Rep, Period> timeout) {
    put_one(value, true, detail::to_ms(timeout));
  }
  // Full at once if there is no room.
  void put_nowait(const T& value) { put_one(value, false, std::nullopt); }
  // Appends every value of `values` in order, in one round trip per 1000 values. With a
  // maxsize, waits until all fit and adds them at once (ValueError if they never can).
  template <std::ranges::input_range R>
  void put_many(const R& values) {
    put_range(values, std::nullopt);
  }
  // Waits at most `timeout` for room for all of them; Full (none added) if there was none.
  template <std::ranges::input_range R, class Rep, class Period>
  void put_many(const R& values, std::chrono::duration<Rep, Period> timeout) {
    put_range(values, detail::to_ms(timeout));
  }

  // Takes the oldest message, waiting for one; acknowledge it with task_done(). Throws
  // ConnectionError when the connection dropped, DecodeError for bytes that are not a T
  // (the message then stays in flight until task_done(), so it is not lost).
  T get() { return one(core_.get(1, true, std::nullopt)); }
  // Waits at most `timeout`; Empty if nothing came.
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) {
    return one(core_.get(1, true, detail::to_ms(timeout)));
  }
  // Empty at once if nothing is waiting.
  T get_nowait() { return one(core_.get(1, false, std::nullopt)); }
  // Takes up to `max` (at most 1000) messages in one round trip: waits (at most `timeout`,
  // if given) for the first, then takes what else is waiting. Empty if none came. Each
  // needs task_done().
  std::vector<T> get_many(std::size_t max,
                          std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    std::vector<T> out;
    for (auto& m : core_.get(max, true, timeout)) out.push_back(mpp::detail::portable_decode<T>(m));
    return out;
  }

  // Acknowledges the oldest message this consumer got and had not acknowledged (n of
  // them, in one round trip): they are gone for good. ValueError when called more often
  // than messages were got. A message whose lease had expired was already put back and
  // will be delivered again.
  void task_done(std::size_t n = 1) { core_.task_done(n); }
  // Waits until no message is waiting or in flight anywhere (polling; it also puts back
  // the messages of dead consumers, as get() does).
  void join() { core_.join(); }

  // Messages waiting (not those in flight). Like Python's, a snapshot.
  std::size_t qsize() { return core_.qsize(); }
  bool empty() { return qsize() == 0; }
  // Whether put_nowait() would raise Full now (never, without a maxsize).
  bool full() { return maxsize() > 0 && qsize() >= maxsize(); }
  // This producer's bound (QueueOptions::maxsize); 0 = none.
  std::size_t maxsize() const noexcept { return core_.maxsize(); }
  // Messages waiting plus those in flight at all consumers.
  std::size_t unfinished_tasks() { return core_.unfinished_tasks(); }
  // Messages this consumer got and has not acknowledged.
  std::size_t in_flight() const noexcept { return core_.in_flight(); }

  // Renews this consumer's lease: call it during a task that may outlast the visibility
  // timeout.
  void heartbeat() { core_.heartbeat(); }
  // Puts back the unacknowledged messages of consumers whose lease expired; returns how
  // many. get() does this by itself every half visibility timeout.
  std::size_t reap() { return core_.reap(); }
  // Puts this consumer's unacknowledged messages back at the head of the queue now and
  // ends its lease. The destructor does the same when the connection is up (otherwise the
  // lease expires and another consumer reaps them).
  void close() noexcept { core_.close(); }
  // Deletes the queue: waiting and in-flight messages of everyone, leases.
  void clear() { core_.clear(); }

  // The Redis key of the waiting messages, and the connection it is reached through.
  const std::string& name() const noexcept { return core_.name(); }
  Connection& connection() const noexcept { return core_.connection(); }

 private:
  void put_one(const T& value, bool block, std::optional<std::chrono::milliseconds> timeout) {
    auto e = mpp::detail::portable_encode<T>(value);
    std::string_view v = mpp::detail::as_chars(e.bytes());
    core_.put(std::span<const std::string_view>(&v, 1), block, timeout);
  }
  template <class R>
  void put_range(const R& values, std::optional<std::chrono::milliseconds> timeout) {
    std::vector<mpp::detail::Encoded> enc;
    // Borrow the bytes of strings only when the range holds them; elements made on the fly
    // (a view, a conversion) are encoded into owned bytes.
    constexpr bool lvalues_of_t =
        std::is_same_v<std::remove_cvref_t<std::ranges::range_reference_t<const R>>, T> &&
        std::is_lvalue_reference_v<std::ranges::range_reference_t<const R>>;
    for (const auto& v : values) {
      if constexpr (lvalues_of_t) {
        enc.push_back(mpp::detail::portable_encode<T>(v));
      } else {
        std::string owned;
        mpp::detail::portable_encode_to(static_cast<const T&>(T(v)), owned);
        enc.emplace_back(std::move(owned));
      }
    }
    std::vector<std::string_view> views;
    views.reserve(enc.size());
    for (const auto& e : enc) views.push_back(mpp::detail::as_chars(e.bytes()));
    if (!views.empty()) core_.put(views, true, timeout);
  }
  static T one(std::vector<std::string> got) { return mpp::detail::portable_decode<T>(got.front()); }

  detail::QueueCore core_;
};

}  // namespace mpp::redis
