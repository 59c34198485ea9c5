// Queue<T>, JoinableQueue<T> and SimpleQueue<T>: Python's multiprocessing queues, in shared
// memory. Many producers and many consumers, in any processes that share the segment:
// children forked after a standalone queue was made, or any process that attached to the
// Manager segment holding a named one (Manager::queue).
//
// Values go through the one codec (detail/codec.hpp), under the rules of
// mpp/serialization.hpp: any trivially copyable type, std::string, standard containers and
// vocabulary types of sendable elements (std::vector, std::map, std::optional, std::tuple,
// ...), a Manager object's handle, or a type of yours with a Boost.Serialization
// serialize() (include <mpp/archive.hpp> where such a type is put or got). The queue is a ring of
// fixed slots claimed without locks (one compare-and-swap per put and per get); an encoded
// item of up to 104 bytes is copied into its slot, a larger one into a block of the
// segment's heap, so one item may be as large as the segment's free memory. An "unbounded"
// queue (maxsize 0) holds at most as many items as its ring has slots (32768 for a
// standalone queue's default 4 MiB ring); put waits beyond that.
//
// Blocking: a caller that must wait spins for 10-50 microseconds (catching a busy peer
// without a system call), then sleeps on a futex word. An idle queue uses no CPU, and a put
// or get that nobody waits for makes no system call.
//
// After a crash (contract): a producer or consumer SIGKILLed at any instruction inside put
// or get leaves the queue valid and usable by everyone else. Each item is delivered whole
// or not at all, and never twice: a producer killed before its publishing store leaves no
// item (its claimed slot is skipped by the next consumer that finds it dead); a consumer
// owns the item from the compare-and-swap that claims it, so one killed inside get (or
// inside get_view's callback) takes the item to its grave, and its slot is freed by the
// next producer or consumer that finds it dead. A claim records the claimer's pid and the
// low 14 bits of its start time (detail/process_identity.hpp); its holder is dead when that
// pid names no process, a zombie, or a process that started at another time, so a dead
// process's pid reused by a new process does not keep its claim alive (unless the new one
// started at the same tick modulo 2^14, 164 s at 100 Hz). Such a repair happens only after a
// caller has waited on the dead claim for a whole spin, so it costs the others a pause, not
// a hang. The one thing a crash can still cost is a leaked heap block (a large item killed
// in a window of a few instructions), never a corrupt queue. A consumer killed between
// get() and task_done() leaves join() waiting, as in Python; a producer killed inside put()
// before its publishing store is not counted as a put (its skip is counted once, whoever
// repairing it is killed where), so join() neither returns early nor waits for a put that
// did not happen.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "mpp/detail/access.hpp"
#include "mpp/detail/codec.hpp"
#include "mpp/detail/queue_core.hpp"
#include "mpp/errors.hpp"

namespace mpp {

// multiprocessing.Queue. Copies of a Queue are handles on the same queue.
template <class T>
class Queue {
 public:
  // A standalone queue in its own anonymous shared memory, shared with children forked
  // after it is made. `maxsize` 0 means bounded only by memory. `capacity_bytes` is the
  // size of that memory (address space; pages are used only as messages need them): the
  // largest message, or the most queued bytes, is a little less. Throws ValueError for a
  // capacity too small, OSError when the memory cannot be mapped.
  explicit Queue(std::size_t maxsize = 0,
                 std::size_t capacity_bytes = detail::QueueCore::default_capacity)
      : Queue(detail::ObjectKind::queue, maxsize, capacity_bytes) {}

  // Puts `item`, waiting as long as needed for room (maxsize, or memory). Throws
  // ValueError after close(), SegmentFull when the item can never fit, and whatever T's
  // serialize() throws. After return the item is in the queue.
  void put(const T& item) { put_until(item, std::nullopt); }
  // Waits at most `timeout` for room; throws Full when there was none.
  template <class Rep, class Period>
  void put(const T& item, std::chrono::duration<Rep, Period> timeout) {
    put_until(item, detail::deadline_after(timeout));
  }
  // Puts only if there is room now; else throws Full.
  void put_nowait(const T& item) { put_until(item, detail::Clock::now()); }

  // Removes and returns the oldest item, waiting as long as needed. Throws ValueError after
  // close(); DecodeError when the item is not a T (it is dropped, the queue stays usable).
  T get() { return get_until(std::nullopt); }
  // Waits at most `timeout`; throws Empty when nothing came.
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) {
    return get_until(detail::deadline_after(timeout));
  }
  // Takes an item only if one is there now; else throws Empty.
  T get_nowait() { return get_until(detail::Clock::now()); }

  // Zero-copy get: removes the oldest item and calls fn(view) with the item borrowed from
  // shared memory, where view is a `const T&` for a trivially copyable T, a std::string_view
  // for std::string (and a decoded T for other types); returns what fn returns. The view is
  // valid only until fn returns: copy out what you keep. The item is taken before fn runs:
  // if fn throws, the item is dropped and the exception propagates; a process killed inside
  // fn loses the item (never delivered twice). fn should be short, since the item's slot is
  // not reused until it returns, and it may use this queue (put or get other items). Waits
  // and throws as get() does.
  template <class F>
  decltype(auto) get_view(F&& fn) {
    return get_view_until(fn, std::nullopt);
  }
  // As get_view(fn), waiting at most `timeout`; throws Empty when nothing came.
  template <class F, class Rep, class Period>
  decltype(auto) get_view(F&& fn, std::chrono::duration<Rep, Period> timeout) {
    return get_view_until(fn, detail::deadline_after(timeout));
  }
  // As get_view(fn), only if an item is there now; else throws Empty.
  template <class F>
  decltype(auto) get_view_nowait(F&& fn) {
    return get_view_until(fn, detail::Clock::now());
  }

  // The number of items queued (exact at the instant it is read; other processes may
  // change it right after, as Python warns).
  std::size_t qsize() const noexcept { return core_.qsize(); }
  bool empty() const noexcept { return qsize() == 0; }
  // True when maxsize > 0 and qsize() >= maxsize.
  bool full() const noexcept { return core_.full(); }
  std::size_t maxsize() const noexcept { return core_.maxsize(); }

  // This handle will put and get no more (Python: close()); later calls on it throw
  // ValueError. Other handles, in this or other processes, are not affected, and what was
  // put stays in the queue.
  void close() noexcept { closed_ = true; }

  // Checks the queue's structure: empty when valid, else what is wrong. Exact while no
  // process puts or gets. For tests and mpp-inspect.
  std::string check() const { return core_.check(); }

 protected:
  friend struct detail::Access;
  // A handle on a queue that already exists in a segment (what Manager::queue returns).
  explicit Queue(detail::QueueCore core) : core_(std::move(core)) {}
  // The engine, for Manager, the handle codec and tests (through detail::Access).
  const detail::QueueCore& core() const noexcept { return core_; }

  // For JoinableQueue and SimpleQueue: a standalone queue of `kind`.
  Queue(detail::ObjectKind kind, std::size_t maxsize, std::size_t capacity_bytes)
      : core_(detail::QueueCore::standalone(kind, maxsize, capacity_bytes,
                                            detail::type_fingerprint<T>())) {}

  // Throws ValueError after close().
  void check_open() const {
    if (closed_) throw ValueError("the queue is closed (close() was called on this handle)");
  }

  // put() with an optional deadline (none: wait for ever); Full when it passes.
  void put_until(const T& item, std::optional<detail::Clock::time_point> deadline) {
    check_open();
    core_.put(detail::encode(item).bytes(), deadline);
  }

  // get() with an optional deadline; Empty when it passes.
  T get_until(std::optional<detail::Clock::time_point> deadline) {
    check_open();
    std::optional<T> out;
    core_.get(
        [](void* ctx, detail::ByteView bytes) {
          static_cast<std::optional<T>*>(ctx)->emplace(detail::decode<T>(bytes));
        },
        &out, deadline);
    return std::move(*out);
  }

  // get_view() with an optional deadline; Empty when it passes.
  template <class F>
  decltype(auto) get_view_until(F& fn, std::optional<detail::Clock::time_point> deadline) {
    check_open();
    using R = std::invoke_result_t<F&, View<T>>;
    static_assert(!std::is_reference_v<R>,
                  "get_view's callback must return a value: the item it views is gone after it");
    struct Ctx {
      F* fn;
      std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> out;
    } ctx{&fn, {}};
    core_.get(
        [](void* p, detail::ByteView bytes) {
          auto& c = *static_cast<Ctx*>(p);
          auto call = [&](View<T> v) -> decltype(auto) { return (*c.fn)(v); };
          if constexpr (detail::encoding_of<T> == detail::Encoding::trivial) {
            // Slots and heap blocks are 8-byte aligned; an over-aligned T is copied.
            if (reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(T) != 0) {
              T copy = detail::decode<T>(bytes);
              if constexpr (std::is_void_v<R>) call(copy); else c.out.emplace(call(copy));
              return;
            }
          }
          if constexpr (std::is_void_v<R>) {
            call(detail::view<T>(bytes));
          } else {
            c.out.emplace(call(detail::view<T>(bytes)));
          }
        },
        &ctx, deadline);
    if constexpr (!std::is_void_v<R>) return R(std::move(*ctx.out));
  }

  detail::QueueCore core_;  // the shared ring this handle uses
  bool closed_ = false;     // close() was called on this handle
};

// multiprocessing.JoinableQueue: a Queue that also counts unfinished tasks.
template <class T>
class JoinableQueue : public Queue<T> {
 public:
  // As Queue's constructor.
  explicit JoinableQueue(std::size_t maxsize = 0,
                         std::size_t capacity_bytes = detail::QueueCore::default_capacity)
      : Queue<T>(detail::ObjectKind::joinable_queue, maxsize, capacity_bytes) {}

  // Marks one item got from the queue as processed. Throws ValueError when called more
  // times than items were put.
  void task_done() { this->core_.task_done(); }

  // Blocks until every item ever put has had its task_done(). With a timeout, throws
  // TimeoutError when tasks are still unfinished then (an mpp addition).
  void join() { this->core_.join(std::nullopt); }
  template <class Rep, class Period>
  void join(std::chrono::duration<Rep, Period> timeout) {
    this->core_.join(detail::deadline_after(timeout));
  }

 private:
  friend struct detail::Access;
  // A handle on a JoinableQueue that already exists in a segment.
  explicit JoinableQueue(detail::QueueCore core) : Queue<T>(std::move(core)) {}
};

// multiprocessing.SimpleQueue: put, get, empty, close; unbounded.
template <class T>
class SimpleQueue {
 public:
  // As Queue's constructor, without maxsize.
  explicit SimpleQueue(std::size_t capacity_bytes = detail::QueueCore::default_capacity)
      : q_(detail::Access::make<Queue<T>>(detail::ObjectKind::simple_queue, 0, capacity_bytes)) {}

  // As Queue::put and Queue::get (blocking).
  void put(const T& item) { q_.put(item); }
  T get() { return q_.get(); }
  bool empty() const noexcept { return q_.empty(); }
  void close() noexcept { q_.close(); }
  std::string check() const { return q_.check(); }

 private:
  friend struct detail::Access;
  // A handle on a SimpleQueue that already exists in a segment.
  explicit SimpleQueue(detail::QueueCore core)
      : q_(detail::Access::make<Queue<T>>(std::move(core))) {}
  // The engine, for the handle codec and tests (through detail::Access).
  const detail::QueueCore& core() const noexcept { return detail::Access::core(q_); }

  Queue<T> q_;
};

}  // namespace mpp
