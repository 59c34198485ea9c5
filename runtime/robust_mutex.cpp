#include "mpp/detail/robust_mutex.hpp"

#include <linux/futex.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "mpp/detail/shared_lock.hpp"
#include "mpp/detail/process_identity.hpp"
#include "mpp/errors.hpp"

namespace mpp::detail {

namespace {

// gettid() is a system call (glibc does not cache it); Condition asks for it on every wait and
// notify. Cached per thread and cleared in a forked child, whose only thread has a new tid
// (as current_pid() does for the pid).
thread_local pid_t cached_tid = 0;

pid_t caller_tid() noexcept {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, [] { cached_tid = 0; });
    return true;
  }();
  (void)registered;
  if (cached_tid == 0) cached_tid = gettid();
  return cached_tid;
}

}  // namespace

RobustMutex::RobustMutex(Kind kind) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutexattr_settype(&a, kind == Kind::recursive ? PTHREAD_MUTEX_RECURSIVE
                                                        : PTHREAD_MUTEX_ERRORCHECK);
  int rc = pthread_mutex_init(&m_, &a);
  pthread_mutexattr_destroy(&a);
  if (rc != 0) throw_os_error(rc, "pthread_mutex_init of a robust process-shared mutex");
}

// Destroying is a no-op on purpose: other processes may still map the memory, and a
// robust mutex holds no kernel resources.
RobustMutex::~RobustMutex() = default;

bool RobustMutex::after_acquire(int rc, const Recover& recover) {
  bool recovered = false;
  if (rc == EOWNERDEAD) {
    // The holder died inside its critical section. We hold the lock now; make the
    // protected state valid before anyone else can see it, then mark it consistent.
    if (recover) {
      try {
        recover();
      } catch (...) {
        pthread_mutex_consistent(&m_);
        record_holder();
        recoveries_.fetch_add(1, std::memory_order_relaxed);
        unlock();
        throw;
      }
    }
    pthread_mutex_consistent(&m_);
    recoveries_.fetch_add(1, std::memory_order_relaxed);
    recovered = true;
  } else if (rc == ENOTRECOVERABLE) {
    // Only reachable if someone unlocked a recovered mutex without marking it consistent,
    // which mpp never does.
    throw SegmentError("a shared lock is permanently unusable (ENOTRECOVERABLE): its segment "
                       "was used by code that bypassed mpp; recreate the segment");
  } else if (rc == EDEADLK) {
    throw ValueError("this process already holds the lock (a Lock is not re-entrant; use RLock)");
  } else if (rc != 0) {
    throw_os_error(rc, "locking a shared mutex");
  }
  record_holder();
  return recovered;
}

bool RobustMutex::lock(const Recover& recover) {
  return after_acquire(pthread_mutex_lock(&m_), recover);
}

std::optional<bool> RobustMutex::lock_until(Clock::time_point deadline, const Recover& recover) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch());
  if (ns.count() < 0) ns = {};
  timespec ts{static_cast<time_t>(ns.count() / 1'000'000'000),
              static_cast<long>(ns.count() % 1'000'000'000)};
  int rc = pthread_mutex_clocklock(&m_, CLOCK_MONOTONIC, &ts);
  if (rc == ETIMEDOUT) return std::nullopt;
  return after_acquire(rc, recover);
}

void RobustMutex::unlock() {
  // For a recursive mutex only the outermost unlock releases it (glibc keeps the depth in
  // __data.__count); the recorded holder is cleared only then, and only by the holder.
  pid_t self = current_pid();
  bool outermost = m_.__data.__count <= 1;
  if (outermost && holder_pid_.load(std::memory_order_relaxed) == self) {
    holder_pid_.store(0, std::memory_order_relaxed);
  }
  int rc = pthread_mutex_unlock(&m_);
  if (rc != 0 && outermost) holder_pid_.store(self, std::memory_order_relaxed);
  if (rc == EPERM) {
    throw ValueError("release of a lock this process does not hold");
  } else if (rc != 0) {
    throw_os_error(rc, "unlocking a shared mutex");
  }
}

void RobustMutex::record_holder() noexcept {
  holder_ticks_.store(static_cast<std::uint32_t>(self_start_ticks()), std::memory_order_relaxed);
  holder_pid_.store(current_pid(), std::memory_order_relaxed);
}

std::uint64_t RobustMutex::holder_identity() const noexcept {
  const pid_t recorded = holder_pid_.load(std::memory_order_relaxed);
  const std::uint32_t ticks = holder_ticks_.load(std::memory_order_relaxed);
  if (recorded != 0) return identity_word(recorded, ticks);
  return identity_word(holder(), 0);
}

pid_t RobustMutex::holder() const noexcept {
  if (pid_t p = holder_pid_.load(std::memory_order_relaxed)) return p;
  // Between acquiring and recording the pid there is a window; glibc keeps the owner's TID
  // in the mutex itself, which for a single-threaded holder is its pid.
  return m_.__data.__owner & 0x3fffffff;
}

// A robust glibc mutex keeps its holder's tid in the futex word itself (the kernel reads it
// to hand the lock over when the holder dies), and a recursive one its depth in __count.
bool RobustMutex::held_by_caller() const noexcept {
  auto word = static_cast<unsigned>(m_.__data.__lock);
  return (word & FUTEX_TID_MASK) == static_cast<unsigned>(caller_tid());
}

unsigned RobustMutex::depth() const noexcept {
  if (!held_by_caller()) return 0;
  bool recursive = (m_.__data.__kind & PTHREAD_MUTEX_RECURSIVE) != 0;
  return recursive ? m_.__data.__count : 1u;
}

}  // namespace mpp::detail
