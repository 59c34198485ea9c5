// The one lock type of mpp: a process-shared, robust pthread mutex that lives inside
// shared memory and survives the death of its holder.
//
// Contract after a crash: when a process dies holding the mutex (SIGKILL at any
// instruction), the next process to lock it is told so. RobustMutex then runs the
// caller's `recover` function while holding the lock, marks the mutex consistent, and
// counts the recovery. The protected structure must be written so that `recover` can make
// it valid again from what is in memory (docs/design/foundations.md, "One lock type").
// Nobody deadlocks and nothing is poisoned.
//
// The layout is fixed and readable without locking (mpp-inspect reads holder() and
// recoveries() from a read-only mapping).
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

#include "mpp/detail/futex.hpp"
#include "mpp/detail/process_identity.hpp"

namespace mpp::detail {

class RobustMutex {
 public:
  enum class Kind : std::uint32_t { normal = 0, recursive = 1 };

  // Initializes a new mutex in place (in the creating process only). Attaching processes
  // use the object as they find it.
  explicit RobustMutex(Kind kind = Kind::normal);
  ~RobustMutex();
  RobustMutex(const RobustMutex&) = delete;
  RobustMutex& operator=(const RobustMutex&) = delete;

  using Recover = std::function<void()>;

  // Locks, blocking. If the previous holder died, runs `recover` (if given) under the lock
  // before returning. Returns true when a recovery happened. Throws SegmentError when the
  // lock word names a holder thread that does not exist (damaged shared memory) instead of
  // waiting forever.
  bool lock(const Recover& recover = {});

  // Locks unless `deadline` passes first. Returns nullopt on timeout; otherwise whether a
  // recovery happened (as lock()).
  std::optional<bool> lock_until(Clock::time_point deadline, const Recover& recover = {});

  // Locks only if free now. Returns nullopt when it is held; otherwise as lock(). Inline:
  // the uncontended path of every shared container's lock.
  std::optional<bool> try_lock(const Recover& recover = {}) {
    const int rc = try_lock_code();
    if (rc == 0) return false;
    if (rc == EBUSY) return std::nullopt;
    return after_acquire(rc, recover);
  }

  // try_lock() in two halves, for a caller that prepares its recovery only when one is due.
  // try_lock_code: pthread_mutex_trylock, the holder recorded when it locked. 0: locked;
  // EBUSY: held by another; anything else (the last holder died, an error) goes to
  // after_acquire(rc, recover), which finishes the lock or throws, as try_lock() would.
  // Throws SegmentError, without locking, when the mutex's type is damaged (kind_intact).
  [[gnu::always_inline]] int try_lock_code() {
    if (!kind_intact()) [[unlikely]] kind_damaged();
    const int rc = pthread_mutex_trylock(&m_);
    if (rc == 0) record_holder();
    return rc;
  }
  bool after_acquire(int rc, const Recover& recover);

  // Unlocks. The caller must hold it. Throws ValueError when this process does not.
  void unlock();
  // Unlocks a mutex the calling thread holds (a guard's release): unlock() without the checks
  // a caller that may not hold it needs. Inline: the release of every shared container's lock.
  [[gnu::always_inline]] void unlock_held() noexcept {
    const bool outermost = m_.__data.__count <= 1;
    if (outermost) holder_pid_.store(0, std::memory_order_relaxed);
    if (pthread_mutex_unlock(&m_) != 0) [[unlikely]] unlock_held_failed(outermost);
  }

  // The pid of the process that holds it, 0 when free. Lock-free and racy by nature: for
  // diagnostics (mpp-inspect), not for decisions.
  pid_t holder() const noexcept;
  // holder() with the low 32 bits of its start time, as an identity_word
  // (process_identity.hpp): identity_alive() of it tells a live holder from a dead one whose
  // pid was reused. The tick half is 0 when unknown (then the pid alone decides).
  std::uint64_t holder_identity() const noexcept;

  // Whether the calling thread holds it. Exact (read from the lock word the kernel keeps),
  // unlike holder(): what Condition uses to refuse a wait or notify without the lock.
  bool held_by_caller() const noexcept;

  // How many times the calling thread holds it: 0 when it does not, else 1 for a normal
  // mutex and the recursion depth for a recursive one (Condition::wait releases that many).
  unsigned depth() const noexcept;

  // How many times a dead holder's lock was recovered, since creation.
  std::uint64_t recoveries() const noexcept { return recoveries_.load(std::memory_order_relaxed); }

  // The raw pthread mutex, for the condition-free code that needs it (none today).
  pthread_mutex_t* native() noexcept { return &m_; }

 private:
  // Whether the mutex type glibc reads from the object on every call (__kind) is one the
  // constructor writes. A damaged one can send glibc down another family's code path (a
  // priority-inheritance kind makes it ask the kernel for FUTEX_LOCK_PI on whatever tid the
  // word holds, and glibc aborts on the answer), so it is checked before every call.
  [[gnu::always_inline]] bool kind_intact() const noexcept {
    const int k = __atomic_load_n(&m_.__data.__kind, __ATOMIC_RELAXED);
    const auto& sane = intact_kinds();
    return k == sane[0] || k == sane[1];
  }
  // The __kind values glibc writes for Kind::normal and Kind::recursive, learnt once from
  // mutexes initialised as the constructor does (they are glibc's, not the ABI's). Inline:
  // every lock checks its mutex against them.
  static const std::array<int, 2>& intact_kinds() noexcept {
    static const std::array<int, 2> kinds = learn_intact_kinds();
    return kinds;
  }
  static std::array<int, 2> learn_intact_kinds() noexcept;
  [[noreturn]] void kind_damaged() const;
  [[gnu::cold]] void unlock_held_failed(bool outermost) noexcept;
  // The blocking part of lock() and lock_until(): nullopt when `deadline` passed.
  std::optional<bool> wait(std::optional<Clock::time_point> deadline, const Recover& recover);
  // holder_ticks_, then holder_pid_, from one read of this process's identity.
  [[gnu::always_inline]] void record_holder() noexcept {
    const std::uint64_t self = self_identity_word();
    holder_ticks_.store(static_cast<std::uint32_t>(self >> 32), std::memory_order_relaxed);
    holder_pid_.store(identity_pid(self), std::memory_order_relaxed);
  }

  pthread_mutex_t m_;
  std::atomic<std::int32_t> holder_pid_{0};  // set after acquiring, cleared before releasing
  std::atomic<std::uint32_t> holder_ticks_{0};  // the holder's start ticks (low 32 bits), stored
                                                // before holder_pid_ (in what was padding)
  std::atomic<std::uint64_t> recoveries_{0};
};

// The holder's start ticks live in what was padding: the layout (read by mpp-inspect and
// embedded in every object's header) is unchanged.
static_assert(sizeof(RobustMutex) == sizeof(pthread_mutex_t) + 16);

// RAII exclusive hold of a RobustMutex; runs `recover` if the previous holder died.
class RobustLockGuard {
 public:
  explicit RobustLockGuard(RobustMutex& m, const RobustMutex::Recover& recover = {})
      : m_(m), recovered_(m.lock(recover)) {}
  ~RobustLockGuard() { m_.unlock(); }
  RobustLockGuard(const RobustLockGuard&) = delete;
  RobustLockGuard& operator=(const RobustLockGuard&) = delete;
  bool recovered() const noexcept { return recovered_; }

 private:
  RobustMutex& m_;
  bool recovered_;
};

}  // namespace mpp::detail
