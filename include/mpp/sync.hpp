// Process-shared synchronisation primitives with the meaning of Python's multiprocessing
// (and threading) ones: Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier.
//
// Every primitive is a handle: a cheap, copyable value pointing at state in shared memory.
// Made with its public constructor (`mpp::Lock lock;`), the state lives in an anonymous
// shared mapping of its own that children forked afterwards share, as Python's
// `multiprocessing.Lock()` is shared with the children it is passed to. Made by a Manager
// (`m.lock("name")`), it lives in the Manager's named segment and any process that attaches
// reaches the same object. A handle keeps its memory mapped for as long as it lives.
//
// Sturdier than Python's where a process dies (SIGKILL at any instruction):
//   - a process killed while it holds a Lock or RLock deadlocks nobody: the next acquirer
//     gets the lock (counted in recoveries()). What state the data it protected is in is
//     the program's business, as with any crash inside a critical section; mpp's own state
//     is always valid.
//   - a process killed while it waits (Event::wait, Condition::wait, Barrier::wait,
//     Semaphore::acquire) leaves the object working for the others: waiting is sleeping on
//     a futex word, of which the kernel forgets a dead sleeper.
//   - a process killed after it changed a primitive but before it woke the sleepers delays
//     them by at most detail::kRecheckInterval (they re-check their condition that often).
//
// Locks are owned by threads (they are robust pthread mutexes): release() by a thread that
// does not hold the lock is a ValueError, where Python's multiprocessing.Lock allows it, and
// acquiring a Lock the calling thread already holds is a ValueError instead of a deadlock.
//
// Keep a handle (or its Manager) alive while you hold a lock: a handle keeps the memory
// mapped, and a lock whose memory this process unmapped while holding it cannot be handed
// over when the process dies (the kernel finds robust locks through the holder's mapping).
// guard() keeps its own handle; `m.lock("l").acquire();` with nothing else keeping the
// Manager's segment mapped in this process does not.
//
// Timeouts are std::chrono durations measured on the steady clock; a negative one means 0.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "mpp/detail/access.hpp"
#include "mpp/detail/futex.hpp"
#include "mpp/detail/sync_state.hpp"

namespace mpp {

namespace detail {

// A duration until a time point of any clock, for try_lock_until.
template <class C, class D>
Clock::time_point to_steady(const std::chrono::time_point<C, D>& t) {
  if constexpr (std::is_same_v<C, Clock>) {
    return std::chrono::time_point_cast<Clock::duration>(t);
  } else {
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(t - C::now());
  }
}

}  // namespace detail

// Holds any of mpp's lockables (Lock, RLock, Semaphore, Condition) from construction to
// destruction: Python's `with lock:`. Made by their guard(); movable, not copyable. It holds
// its own copy of the handle, so `auto g = value.get_lock().guard();` is safe.
// Acquiring throws what the lockable's acquire() throws; the guard then holds nothing.
template <class L>
class [[nodiscard]] Guard {
 public:
  // Acquires `lockable` (blocking), keeping a copy of the handle.
  explicit Guard(const L& lockable) : lockable_(lockable) {
    lockable_.acquire();
    held_ = true;
  }
  // Takes over what `other` holds; `other` then releases nothing.
  Guard(Guard&& other) noexcept
      : lockable_(other.lockable_), held_(std::exchange(other.held_, false)) {}
  Guard& operator=(Guard&&) = delete;
  Guard(const Guard&) = delete;
  ~Guard() {
    if (held_) lockable_.release();
  }
  // Releases early; the destructor then does nothing.
  void release() {
    if (std::exchange(held_, false)) lockable_.release();
  }

 private:
  L lockable_;
  bool held_ = false;
};

class Condition;
class Manager;

namespace detail {
template <class T>
struct HandleCodec;
}  // namespace detail

// What Lock and RLock share, and what Condition::get_lock() returns: a handle on a robust
// mutex in shared memory. Take a `LockHandle&` to accept either kind of lock. Copies are
// handles on the same lock.
class LockHandle {
 public:
  // Blocks until the lock is acquired and returns true; with block = false, takes it only if
  // it is free (or an RLock the caller holds) and says whether it did (Python:
  // acquire(block=False)). If the previous holder died holding it, the lock is recovered and
  // acquired (see recoveries()). A blocking acquire of a Lock the calling thread already
  // holds throws ValueError (it would deadlock).
  bool acquire(bool block = true);

  // Waits at most `timeout` for the lock; returns whether it was acquired.
  template <class Rep, class Period>
  bool acquire(std::chrono::duration<Rep, Period> timeout) {
    return acquire_until(*detail::deadline_after(timeout));
  }
  // Waits until `deadline` (steady clock) at most; returns whether it was acquired.
  bool acquire_until(detail::Clock::time_point deadline);

  // Releases it. Throws ValueError when the calling thread does not hold it. An RLock is
  // released for others when every acquire() of its holder has been matched.
  void release();

  // The C++ names, so std::lock_guard, std::unique_lock and std::scoped_lock work.
  void lock() { acquire(); }
  void unlock() { release(); }
  bool try_lock() { return acquire(false); }
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
    return acquire(timeout);
  }
  template <class C, class D>
  bool try_lock_until(const std::chrono::time_point<C, D>& t) {
    return acquire_until(detail::to_steady(t));
  }

  // Whether the calling thread holds it.
  bool is_owned() const noexcept;

  // The pid of the process holding it, 0 when free (racy: for diagnostics).
  pid_t holder() const noexcept;

  // How many times a holder died holding it and the lock was recovered, since creation.
  std::uint64_t recoveries() const noexcept;

  // Handles compare equal when they designate the same lock.
  friend bool operator==(const LockHandle& a, const LockHandle& b) noexcept {
    return a.header_ == b.header_;
  }

 protected:
  // A handle on the mutex in `header`, in `segment` (which the handle keeps mapped).
  LockHandle(detail::ObjectHeader* header, std::shared_ptr<detail::Segment> segment, bool recursive) noexcept
      : header_(header), recursive_(recursive), segment_(std::move(segment)) {}

 private:
  // Where the lock lives, for what sends or binds it (through detail::Access): Manager (a
  // Condition bound to a lock), Condition, and the handle codec (a Lock or Value sent
  // through a Queue or Pipe).
  friend struct detail::Access;
  detail::ObjectHeader* header() const noexcept { return header_; }
  const std::shared_ptr<detail::Segment>& segment() const noexcept { return segment_; }

  detail::ObjectHeader* header_;
  bool recursive_;
  std::shared_ptr<detail::Segment> segment_;
};

// multiprocessing.Lock: a non-recursive lock. See LockHandle for its members.
class Lock : public LockHandle {
 public:
  // A new, free Lock in its own anonymous shared memory, shared with children forked
  // after it. Throws OSError when the memory cannot be mapped.
  Lock();

  // Holds the lock until the guard is destroyed (Python: `with lock:`).
  Guard<Lock> guard() { return Guard<Lock>(*this); }

 private:
  friend struct detail::Access;
  // The Lock whose state is `state`, in `segment` (which this handle keeps mapped).
  Lock(detail::LockState* state, std::shared_ptr<detail::Segment> segment) noexcept;
};

// multiprocessing.RLock: a recursive lock; the thread holding it may acquire it again, and
// it is free again when every acquire() has been matched by a release().
class RLock : public LockHandle {
 public:
  // A new, free RLock in its own anonymous shared memory (as Lock()).
  RLock();

  // Holds the lock until the guard is destroyed (Python: `with rlock:`).
  Guard<RLock> guard() { return Guard<RLock>(*this); }

 private:
  friend struct detail::Access;
  // The RLock whose state is `state`, in `segment`.
  RLock(detail::LockState* state, std::shared_ptr<detail::Segment> segment) noexcept;
  // The recursive lock in another object's header (a Value's, Array's or Condition's).
  RLock(detail::ObjectHeader* header, std::shared_ptr<detail::Segment> segment) noexcept;
};

// multiprocessing.Semaphore: a counter that acquire() decrements, waiting while it is 0,
// and release() increments.
class Semaphore {
 public:
  // A new Semaphore with this value, in its own anonymous shared memory. Throws ValueError
  // when `value` is negative or above 2^31 - 1 (Python's SEM_VALUE_MAX).
  explicit Semaphore(int value = 1);

  // Decrements the counter, waiting while it is 0; returns true. With block = false, only
  // if it is above 0 now, and says whether it did.
  bool acquire(bool block = true);
  // Waits at most `timeout` for the counter to be above 0; returns whether it took one.
  template <class Rep, class Period>
  bool acquire(std::chrono::duration<Rep, Period> timeout) {
    return acquire_until(*detail::deadline_after(timeout));
  }
  bool acquire_until(detail::Clock::time_point deadline);

  // Adds n to the counter and wakes waiters. Throws ValueError when a BoundedSemaphore
  // would go above its initial value ("released too many times"), or any semaphore above
  // 2^31 - 1; the counter is then unchanged.
  void release(int n = 1);

  // The counter now (Python: get_value()); racy by nature.
  int get_value() const noexcept;

  // The C++ names (std::counting_semaphore's and BasicLockable's).
  bool try_acquire() { return acquire(false); }
  void lock() { acquire(); }
  void unlock() { release(); }
  bool try_lock() { return acquire(false); }

  // Holds one unit until the guard is destroyed (Python: `with semaphore:`).
  Guard<Semaphore> guard() { return Guard<Semaphore>(*this); }

 protected:
  // A new Semaphore; `bounded` makes release() refuse to go above `value`.
  Semaphore(int value, bool bounded);
  // The Semaphore (or BoundedSemaphore) whose state is `state`, in `segment`.
  Semaphore(detail::SemaphoreState* state, std::shared_ptr<detail::Segment> segment) noexcept;

 private:
  friend struct detail::Access;
  // The shared state, for diagnostics and tests.
  detail::SemaphoreState* state() const noexcept { return state_; }

  detail::SemaphoreState* state_;
  std::shared_ptr<detail::Segment> segment_;
};

// multiprocessing.BoundedSemaphore: a Semaphore whose release() throws ValueError rather
// than raise the counter above its initial value.
class BoundedSemaphore : public Semaphore {
 public:
  // A new BoundedSemaphore with this value and bound (as Semaphore(value)).
  explicit BoundedSemaphore(int value = 1);

  // Holds one unit until the guard is destroyed (Python: `with semaphore:`).
  Guard<BoundedSemaphore> guard() { return Guard<BoundedSemaphore>(*this); }

 private:
  friend struct detail::Access;
  // The BoundedSemaphore whose state is `state`, in `segment`.
  BoundedSemaphore(detail::SemaphoreState* state, std::shared_ptr<detail::Segment> segment) noexcept
      : Semaphore(state, std::move(segment)) {}
};

// multiprocessing.Event: a flag that set() raises, clear() lowers and wait() waits for.
class Event {
 public:
  // A new, cleared Event in its own anonymous shared memory.
  Event();

  // Sets the flag and wakes every waiter.
  void set() noexcept;
  // Clears the flag.
  void clear() noexcept;
  // Whether the flag is set.
  bool is_set() const noexcept;
  // Waits until the flag is set; returns true.
  bool wait() { return wait_until(std::nullopt); }
  // Waits at most `timeout`; returns the flag (false: timed out).
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_until(detail::deadline_after(timeout));
  }
  bool wait_until(std::optional<detail::Clock::time_point> deadline);

 private:
  friend struct detail::Access;
  // The Event whose state is `state`, in `segment`.
  Event(detail::EventState* state, std::shared_ptr<detail::Segment> segment) noexcept;
  // The shared state, for diagnostics and tests.
  detail::EventState* state() const noexcept { return state_; }

  detail::EventState* state_;
  std::shared_ptr<detail::Segment> segment_;
};

// multiprocessing.Condition: waits for a notification while its lock is released.
// notify(n) wakes at most n waiters, and like Python's may occasionally wake more (a waiter
// that had released the lock but not yet gone to sleep returns at once): wait in a loop
// on the predicate, or use wait_for. A waiter killed between its wake-up and re-taking the
// lock takes its notification with it, as a thread dying there would; notify_all(), or
// waits with a timeout, are the cure where that matters.
class Condition {
 public:
  // A new Condition with a new RLock of its own, in its own anonymous shared memory.
  Condition();
  // A new Condition bound to `lock` (Lock or RLock), in its own anonymous shared memory.
  explicit Condition(Lock lock);
  explicit Condition(RLock lock);

  // The lock's acquire/release (Python: the Condition's acquire/release and `with cond:`).
  bool acquire(bool block = true) { return lock_.acquire(block); }
  template <class Rep, class Period>
  bool acquire(std::chrono::duration<Rep, Period> timeout) {
    return lock_.acquire(timeout);
  }
  void release() { lock_.release(); }
  void lock() { acquire(); }
  void unlock() { release(); }
  bool try_lock() { return acquire(false); }
  Guard<Condition> guard() { return Guard<Condition>(*this); }

  // Releases the lock (all levels of an RLock), waits for a notification, re-acquires the
  // lock as it was held. Returns false only when `timeout` passed. Throws ValueError when
  // the calling thread does not hold the lock.
  bool wait() { return wait_until(std::nullopt); }
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_until(detail::deadline_after(timeout));
  }
  bool wait_until(std::optional<detail::Clock::time_point> deadline);

  // Waits until predicate() is true (checked first, and after every wake-up, with the lock
  // held); returns its last value, false when `timeout` passed first. Python's wait_for.
  template <class Predicate>
  bool wait_for(Predicate predicate) {
    while (!predicate()) wait();
    return true;
  }
  template <class Predicate, class Rep, class Period>
  bool wait_for(Predicate predicate, std::chrono::duration<Rep, Period> timeout) {
    auto deadline = detail::deadline_after(timeout);
    bool result = predicate();
    while (!result) {
      if (!wait_until(deadline)) return predicate();
      result = predicate();
    }
    return result;
  }

  // Wakes at most n waiters (see above); notify_all() wakes them all. Throws ValueError when
  // the calling thread does not hold the lock.
  void notify(int n = 1);
  void notify_all();

  // The lock the Condition is bound to.
  LockHandle get_lock() const noexcept { return lock_; }

 private:
  friend struct detail::Access;
  // The Condition whose state is `state`, in `segment`, bound to the lock its state names.
  Condition(detail::ConditionState* state, std::shared_ptr<detail::Segment> segment);
  // The shared state, for diagnostics and tests.
  detail::ConditionState* state() const noexcept { return state_; }

  using Made = std::pair<detail::ConditionState*, std::shared_ptr<detail::Segment>>;
  explicit Condition(Made made);
  Condition(Made made, LockHandle lock);

  detail::ConditionState* state_;
  std::shared_ptr<detail::Segment> segment_;
  LockHandle lock_;
};

// multiprocessing.Barrier (threading.Barrier's meaning): `parties` processes wait() until
// all have arrived; then one of them runs `action`, and all are released, each wait()
// returning a different index in [0, parties). Then the barrier is ready again.
//
// Broken state: abort(), a wait() that times out, or an action that throws breaks the
// barrier: every waiter and every later wait() throws BrokenBarrierError until reset().
// After a crash: a process killed while waiting has arrived, and its arrival counts (the
// others are released when the remaining parties arrive; reset() starts over instead). A
// process killed while it runs the action breaks the barrier, as an action that throws
// does; the waiters learn of it within detail::kRecheckInterval.
class Barrier {
 public:
  // What the last arrival runs before the others are released (Python: action=).
  using Action = std::function<void()>;
  // A wait's limit; no value waits for ever.
  using Timeout = std::optional<std::chrono::nanoseconds>;

  // A new Barrier for `parties` (> 0; else ValueError) in its own anonymous shared memory.
  // `action` runs in the process that arrives last, before any are released. `timeout` is
  // the default for wait().
  explicit Barrier(unsigned parties, Action action = {}, Timeout timeout = std::nullopt);

  // Waits for all parties (at most the default timeout, if any). Returns the arrival index.
  // Throws BrokenBarrierError if the barrier is or becomes broken, or the timeout passes
  // (which breaks it for all); rethrows what the action threw, in the process that ran it.
  unsigned wait() { return wait_until(default_deadline()); }
  template <class Rep, class Period>
  unsigned wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_until(detail::deadline_after(timeout));
  }
  unsigned wait_until(std::optional<detail::Clock::time_point> deadline);

  // Returns the barrier to its empty, unbroken state; processes waiting get
  // BrokenBarrierError.
  void reset();
  // Breaks the barrier: waiters and later wait() calls get BrokenBarrierError until reset().
  void abort();

  // The number of processes needed to pass.
  unsigned parties() const noexcept;
  // The number of processes waiting now (0 while broken).
  unsigned n_waiting() const;
  // Whether the barrier is broken.
  bool broken() const noexcept;

 private:
  friend struct detail::Access;
  // The Barrier whose state is `state`, in `segment`; the action is this handle's own.
  Barrier(detail::BarrierState* state, std::shared_ptr<detail::Segment> segment, Action action = {},
          Timeout timeout = std::nullopt) noexcept;

  std::optional<detail::Clock::time_point> default_deadline() const {
    if (!timeout_) return std::nullopt;
    return detail::deadline_after(*timeout_);
  }
  void lock() const;

  detail::BarrierState* state_;
  std::shared_ptr<detail::Segment> segment_;
  std::shared_ptr<const Action> action_;
  Timeout timeout_;
};

}  // namespace mpp
