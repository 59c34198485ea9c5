#include "mpp/sync.hpp"

#include <string>

#include "mpp/detail/segment.hpp"
#include "mpp/detail/shm_bounds.hpp"
#include "mpp/errors.hpp"

namespace mpp {

using detail::Clock;
using detail::sleep_on;

namespace {

bool passed(const std::optional<Clock::time_point>& deadline) {
  return deadline && Clock::now() >= *deadline;
}

}  // namespace

// ---- Lock, RLock ----------------------------------------------------------------------

bool LockHandle::acquire(bool block) {
  if (block) {
    header_->mutex.lock();
    return true;
  }
  // A robust error-checking mutex answers a try by its holder with EDEADLK; Python's
  // Lock.acquire(False) answers False.
  if (!recursive_ && header_->mutex.held_by_caller()) return false;
  return header_->mutex.try_lock().has_value();
}

bool LockHandle::acquire_until(Clock::time_point deadline) {
  return header_->mutex.lock_until(deadline).has_value();
}

void LockHandle::release() { header_->mutex.unlock(); }

bool LockHandle::is_owned() const noexcept { return header_->mutex.held_by_caller(); }

pid_t LockHandle::holder() const noexcept { return header_->mutex.holder(); }

std::uint64_t LockHandle::recoveries() const noexcept { return header_->mutex.recoveries(); }

Lock::Lock(detail::LockState* state, std::shared_ptr<detail::Segment> segment) noexcept
    : LockHandle(&state->header, std::move(segment), false) {}

Lock::Lock() : LockHandle(nullptr, nullptr, false) {
  auto [state, segment] = detail::make_standalone<detail::LockState>(detail::RobustMutex::Kind::normal);
  *this = Lock(state, std::move(segment));
}

RLock::RLock(detail::LockState* state, std::shared_ptr<detail::Segment> segment) noexcept
    : LockHandle(&state->header, std::move(segment), true) {}

RLock::RLock(detail::ObjectHeader* header, std::shared_ptr<detail::Segment> segment) noexcept
    : LockHandle(header, std::move(segment), true) {}

RLock::RLock() : LockHandle(nullptr, nullptr, true) {
  auto [state, segment] =
      detail::make_standalone<detail::LockState>(detail::RobustMutex::Kind::recursive);
  *this = RLock(state, std::move(segment));
}

// ---- Semaphore ------------------------------------------------------------------------

Semaphore::Semaphore(detail::SemaphoreState* state, std::shared_ptr<detail::Segment> segment) noexcept
    : state_(state), segment_(std::move(segment)) {}

Semaphore::Semaphore(int value) : Semaphore(value, false) {}

Semaphore::Semaphore(int value, bool bounded) : state_(nullptr) {
  using S = detail::SemaphoreState;
  auto v = detail::checked_semaphore_value(value);
  auto [state, segment] = detail::make_standalone<S>(v, bounded ? v : S::kUnbounded);
  state_ = state;
  segment_ = std::move(segment);
}

BoundedSemaphore::BoundedSemaphore(int value) : Semaphore(value, true) {}

namespace {

bool try_take(detail::SemaphoreState& s) {
  auto v = s.value.load(std::memory_order_relaxed);
  while (v > 0) {
    if (s.value.compare_exchange_weak(v, v - 1, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

bool take(detail::SemaphoreState& s, std::optional<Clock::time_point> deadline) {
  for (;;) {
    if (try_take(s)) return true;
    if (passed(deadline)) return false;
    // Announce the sleep before the last look at the counter (both seq_cst), so that a
    // release() either sees a sleeper to wake or is seen here.
    s.sleepers.fetch_add(1);
    if (s.value.load() == 0) sleep_on(s.value, 0, deadline);
    s.sleepers.fetch_sub(1);
  }
}

}  // namespace

bool Semaphore::acquire(bool block) {
  return block ? take(*state_, std::nullopt) : try_take(*state_);
}

bool Semaphore::acquire_until(Clock::time_point deadline) { return take(*state_, deadline); }

void Semaphore::release(int n) {
  using S = detail::SemaphoreState;
  if (n < 1) throw ValueError("release(n) needs n >= 1, not " + std::to_string(n));
  auto& s = *state_;
  auto v = s.value.load(std::memory_order_relaxed);
  std::uint64_t next;
  do {
    next = std::uint64_t{v} + static_cast<std::uint64_t>(n);
    if (s.max_value != S::kUnbounded && next > s.max_value) {
      throw ValueError("semaphore or lock released too many times (a BoundedSemaphore of " +
                       std::to_string(s.max_value) + ")");
    }
    if (next > S::kMaxValue) throw ValueError("a semaphore's value cannot exceed 2^31 - 1");
  } while (!s.value.compare_exchange_weak(v, static_cast<std::uint32_t>(next)));
  // Every sleeper is woken, not n: each re-checks the counter, so one that is killed between
  // its wake-up and taking a unit cannot leave the unit stranded with the others asleep.
  if (s.sleepers.load() != 0) detail::futex_wake_all(s.value);
}

int Semaphore::get_value() const noexcept {
  return static_cast<int>(state_->value.load(std::memory_order_relaxed));
}

// ---- Event ----------------------------------------------------------------------------
// The word is (number of set() calls that raised the flag) << 1 | flag, so a waiter that
// sleeps through a set() quickly followed by clear() still sees that it happened and
// returns true, as Python's threading.Event.wait does.

Event::Event(detail::EventState* state, std::shared_ptr<detail::Segment> segment) noexcept
    : state_(state), segment_(std::move(segment)) {}

Event::Event() : state_(nullptr) {
  auto [state, segment] = detail::make_standalone<detail::EventState>();
  state_ = state;
  segment_ = std::move(segment);
}

void Event::set() noexcept {
  auto& s = *state_;
  auto w = s.flag.load(std::memory_order_relaxed);
  while ((w & 1u) == 0 && !s.flag.compare_exchange_weak(w, (w + 2u) | 1u)) {
  }
  if (s.sleepers.load() != 0) detail::futex_wake_all(s.flag);
}

void Event::clear() noexcept { state_->flag.fetch_and(~1u); }

bool Event::is_set() const noexcept { return (state_->flag.load() & 1u) != 0; }

bool Event::wait_until(std::optional<Clock::time_point> deadline) {
  auto& s = *state_;
  const auto w0 = s.flag.load();
  if (w0 & 1u) return true;
  for (;;) {
    if (s.flag.load() != w0) return true;  // with the flag clear, only a set() changes it
    if (passed(deadline)) return false;
    s.sleepers.fetch_add(1);
    sleep_on(s.flag, w0, deadline);
    s.sleepers.fetch_sub(1);
  }
}

// ---- Condition ------------------------------------------------------------------------

namespace {

LockHandle lock_of(detail::ConditionState* state,
                           const std::shared_ptr<detail::Segment>& segment) {
  if (state->lock_offset == 0) return detail::Access::make<RLock>(&state->header, segment);
  if (!detail::in_heap(*segment, state->lock_offset, sizeof(detail::LockState), alignof(detail::LockState)) ||
      (state->lock_kind != detail::ObjectKind::lock && state->lock_kind != detail::ObjectKind::rlock)) {
    detail::throw_corrupt(*segment, state, "condition",
                          "its lock's offset " + std::to_string(state->lock_offset) + " is not a lock");
  }
  auto* lock = segment->at<detail::LockState>(state->lock_offset);
  if (state->lock_kind == detail::ObjectKind::lock)
    return detail::Access::make<Lock>(lock, segment);
  return detail::Access::make<RLock>(lock, segment);
}

}  // namespace

Condition::Condition(detail::ConditionState* state, std::shared_ptr<detail::Segment> segment)
    : state_(state), segment_(std::move(segment)), lock_(lock_of(state_, segment_)) {}

Condition::Condition(std::pair<detail::ConditionState*, std::shared_ptr<detail::Segment>> made)
    : Condition(made.first, std::move(made.second)) {}

Condition::Condition(std::pair<detail::ConditionState*, std::shared_ptr<detail::Segment>> made,
                     LockHandle lock)
    : state_(made.first), segment_(std::move(made.second)), lock_(std::move(lock)) {}

Condition::Condition() : Condition(detail::make_standalone<detail::ConditionState>()) {}

Condition::Condition(Lock lock)
    : Condition(detail::make_standalone<detail::ConditionState>(), std::move(lock)) {}

Condition::Condition(RLock lock)
    : Condition(detail::make_standalone<detail::ConditionState>(), std::move(lock)) {}

bool Condition::wait_until(std::optional<Clock::time_point> deadline) {
  auto& mutex = detail::Access::header(lock_)->mutex;
  auto& s = *state_;
  const unsigned depth = mutex.depth();
  if (depth == 0) {
    throw ValueError("Condition.wait() without holding its lock: acquire it first");
  }
  // Read under the lock: a notify() after we release it changes seq, so none is missed.
  const auto seq0 = s.seq.load();
  for (unsigned i = 0; i < depth; ++i) mutex.unlock();
  bool notified = false;
  s.sleepers.fetch_add(1);
  for (;;) {
    if (s.seq.load() != seq0) {
      notified = true;
      break;
    }
    if (passed(deadline)) break;
    sleep_on(s.seq, seq0, deadline);
  }
  s.sleepers.fetch_sub(1);
  for (unsigned i = 0; i < depth; ++i) mutex.lock();
  return notified;
}

void Condition::notify(int n) {
  if (!lock_.is_owned()) {
    throw ValueError("Condition.notify() without holding its lock: acquire it first");
  }
  if (n <= 0) return;
  state_->seq.fetch_add(1);
  if (state_->sleepers.load() != 0) detail::futex_wake(state_->seq, n);
}

void Condition::notify_all() { notify(0x7fffffff); }

// ---- Barrier --------------------------------------------------------------------------

Barrier::Barrier(detail::BarrierState* state, std::shared_ptr<detail::Segment> segment,
                 Action action, Timeout timeout) noexcept
    : state_(state),
      segment_(std::move(segment)),
      action_(action ? std::make_shared<const Action>(std::move(action)) : nullptr),
      timeout_(timeout) {}

Barrier::Barrier(unsigned parties, Action action, Timeout timeout)
    : state_(nullptr), action_(action ? std::make_shared<const Action>(std::move(action)) : nullptr),
      timeout_(timeout) {
  auto [state, segment] = detail::make_standalone<detail::BarrierState>(detail::checked_parties(parties));
  state_ = state;
  segment_ = std::move(segment);
}

void Barrier::lock() const {
  auto* s = state_;
  s->header.mutex.lock([s] { s->recover(); });
}

namespace {

[[noreturn]] void throw_broken() {
  throw BrokenBarrierError(
      "the Barrier is broken (aborted, reset, timed out, or its action failed); reset() it "
      "to use it again");
}

}  // namespace

unsigned Barrier::wait_until(std::optional<Clock::time_point> deadline) {
  auto& s = *state_;
  auto& mutex = s.header.mutex;
  lock();
  if (s.broken.load() != 0) {
    mutex.unlock();
    throw_broken();
  }
  const std::uint32_t index = s.arrivals();
  const std::uint32_t g = s.gen.load(std::memory_order_relaxed);
  s.count.store(index + 1, std::memory_order_relaxed);
  s.count_gen.store(g, std::memory_order_release);

  if (index + 1 == s.parties) {
    if (action_) {
      try {
        (*action_)();
      } catch (...) {
        s.broken.store(1);
        s.end_generation(true);
        mutex.unlock();
        throw;
      }
    }
    s.end_generation(false);
    mutex.unlock();
    return index;
  }
  mutex.unlock();

  for (;;) {
    if (s.gen.load(std::memory_order_acquire) != g) break;
    if (passed(deadline)) {
      lock();
      if (s.gen.load(std::memory_order_relaxed) == g) {
        // Python: a wait() that times out breaks the barrier for everyone.
        s.broken.store(1);
        s.end_generation(true);
        mutex.unlock();
        throw BrokenBarrierError("Barrier.wait() timed out; the barrier is now broken");
      }
      mutex.unlock();
      break;
    }
    sleep_on(s.gen, g, deadline);
    // A last arrival that died inside the action holds the lock with nobody to recover it:
    // every waiter tries it after each sleep, and the recovery breaks the barrier.
    if (s.gen.load(std::memory_order_acquire) == g) {
      if (mutex.try_lock([&s] { s.recover(); })) mutex.unlock();
    }
  }

  // Under the lock, gen and the history are consistent: generation g's bit is only rewritten
  // when generation g + 64 ends. A waiter descheduled for that long (possible only with more
  // processes than parties) cannot know and reports a release.
  lock();
  const std::uint32_t elapsed = s.gen.load(std::memory_order_relaxed) - g;
  const bool ended_broken =
      elapsed <= 64 && ((s.broken_history.load(std::memory_order_relaxed) >> (g % 64)) & 1u);
  mutex.unlock();
  if (ended_broken) throw_broken();
  return index;
}

void Barrier::reset() {
  auto& s = *state_;
  lock();
  if (s.arrivals() > 0) s.end_generation(true);
  s.broken.store(0);
  s.header.mutex.unlock();
}

void Barrier::abort() {
  auto& s = *state_;
  lock();
  s.broken.store(1);
  if (s.arrivals() > 0) s.end_generation(true);
  s.header.mutex.unlock();
}

unsigned Barrier::parties() const noexcept { return state_->parties; }

unsigned Barrier::n_waiting() const {
  auto& s = *state_;
  lock();
  unsigned n = s.broken.load() != 0 ? 0 : s.arrivals();
  s.header.mutex.unlock();
  return n;
}

bool Barrier::broken() const noexcept { return state_->broken.load() != 0; }

}  // namespace mpp
