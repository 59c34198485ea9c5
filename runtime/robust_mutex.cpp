#include "mpp/detail/robust_mutex.hpp"

#include <linux/futex.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <array>
#include <ctime>
#include <fstream>
#include <limits>
#include <string>

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

// Initialises `m` as RobustMutex does; returns pthread_mutex_init's result.
int init_robust(pthread_mutex_t& m, RobustMutex::Kind kind) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutexattr_settype(&a, kind == RobustMutex::Kind::recursive ? PTHREAD_MUTEX_RECURSIVE
                                                        : PTHREAD_MUTEX_ERRORCHECK);
  const int rc = pthread_mutex_init(&m, &a);
  pthread_mutexattr_destroy(&a);
  return rc;
}

}  // namespace

RobustMutex::RobustMutex(Kind kind) {
  if (const int rc = init_robust(m_, kind); rc != 0)
    throw_os_error(rc, "pthread_mutex_init of a robust process-shared mutex");
}

std::array<int, 2> RobustMutex::learn_intact_kinds() noexcept {
  std::array<int, 2> k{};
  for (const Kind kind : {Kind::normal, Kind::recursive}) {
    pthread_mutex_t m;
    init_robust(m, kind);  // cannot fail: no resources, attributes known valid
    k[static_cast<std::size_t>(kind)] = m.__data.__kind;
    pthread_mutex_destroy(&m);
  }
  return k;
}

void RobustMutex::kind_damaged() const {
  throw SegmentError("a shared lock's mutex type was overwritten (glibc kind " +
                     std::to_string(__atomic_load_n(&m_.__data.__kind, __ATOMIC_RELAXED)) +
                     "): the segment is damaged; recreate it");
}

// Destroying is a no-op on purpose: other processes may still map the memory, and a
// robust mutex holds no kernel resources.
RobustMutex::~RobustMutex() = default;

bool RobustMutex::after_acquire(int rc, const Recover& recover) {
  bool recovered = false;
  if (rc == EOWNERDEAD) {
    // The holder died inside its critical section. We hold the lock now; make the
    // protected state valid before anyone else can see it, then mark it consistent.
    // Recorded first: a recovery can be long, and waiters check the word against it (wait()).
    record_holder();
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

namespace {

timespec to_timespec(Clock::time_point t) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch());
  if (ns.count() < 0) ns = {};
  return timespec{static_cast<time_t>(ns.count() / 1'000'000'000),
                  static_cast<long>(ns.count() % 1'000'000'000)};
}

}  // namespace

namespace {

// Locks found damaged by wait() in this thread, so that later calls on the same lock fail at
// once instead of waiting again: the address and the lock word seen. Per thread, so that it
// needs no lock (a process-wide one could be held by another thread at a fork); a few
// entries suffice.
struct DamagedLock {
  const void* mutex;
  unsigned word;
};
thread_local std::array<DamagedLock, 8> damaged_locks{};
thread_local std::size_t damaged_next = 0;

bool known_damaged(const void* m, unsigned word) {
  for (const auto& d : damaged_locks)
    if (d.mutex == m && d.word == word) return true;
  return false;
}

[[noreturn]] void damaged(const void* m, unsigned word, const std::string& why) {
  damaged_locks[damaged_next++ % damaged_locks.size()] = {m, word};
  throw SegmentError("a shared lock " + why + ": the segment is damaged; recreate it");
}

// The process a thread belongs to (its Tgid), or 0 when it cannot be read.
pid_t process_of(pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(tid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "Tgid:") {
      pid_t tgid = 0;
      in >> tgid;
      return tgid;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return 0;
}

}  // namespace

// A holder that dies is reported by the kernel: it walks the dead thread's robust list and
// clears the owner's tid from the lock word (setting FUTEX_OWNER_DIED) before the tid can be
// reused. And a live holder records its pid beside the word (record_holder) right after it
// acquires. So a word naming a thread that does not exist, naming for a whole second a
// thread of another process than the recorded holder, or naming no thread while it has the
// waiters bit but not FUTEX_OWNER_DIED, was not written by a holder or the kernel: it is
// damaged shared memory, on which the kernel would let a waiter sleep forever. The wait is
// therefore cut into slices (short at first, then up to a second, so a long but healthy hold
// costs a kill(2) a second) and the word is checked after each one.
std::optional<bool> RobustMutex::wait(std::optional<Clock::time_point> deadline, const Recover& recover) {
  auto slice = std::chrono::milliseconds(10);
  unsigned suspect_word = 0;
  pid_t suspect_holder = 0;
  bool suspect = false;
  Clock::time_point suspect_since{};
  for (;;) {
    const auto word = static_cast<unsigned>(__atomic_load_n(&m_.__data.__lock, __ATOMIC_ACQUIRE));
    if (word != 0 && known_damaged(this, word))
      damaged(this, word, "was found damaged before and still holds the same word");
    auto until = Clock::now() + slice;
    if (deadline && *deadline < until) until = *deadline;
    const timespec ts = to_timespec(until);
    const int rc = pthread_mutex_clocklock(&m_, CLOCK_MONOTONIC, &ts);
    if (rc != ETIMEDOUT) return after_acquire(rc, recover);
    const auto now = Clock::now();
    if (deadline && now >= *deadline) return std::nullopt;
    slice = std::min<std::chrono::milliseconds>(slice * 2, std::chrono::seconds(1));
    const auto seen = static_cast<unsigned>(__atomic_load_n(&m_.__data.__lock, __ATOMIC_ACQUIRE));
    const auto tid = static_cast<pid_t>(seen & FUTEX_TID_MASK);
    if (tid == 0) {
      // Free (0), or its holder died (FUTEX_OWNER_DIED, which glibc hands over): both are
      // taken by the next try. glibc's unlock and the kernel's owner-death handling each
      // replace the whole word at once, so no holder ever leaves FUTEX_WAITERS alone on it;
      // glibc would wait for such a word to become 0 forever.
      if (seen != 0 && (seen & FUTEX_OWNER_DIED) == 0)
        damaged(this, seen, "has its waiters bit set but no holder");
      continue;
    }
    const bool gone = ::kill(tid, 0) != 0 && errno == ESRCH;
    if (static_cast<unsigned>(__atomic_load_n(&m_.__data.__lock, __ATOMIC_ACQUIRE)) != seen) continue;
    if (gone) damaged(this, seen, "names thread " + std::to_string(tid) + " as its holder, which does not exist");
    const pid_t holder = holder_pid_.load(std::memory_order_relaxed);
    if (holder != 0 && (holder == tid || process_of(tid) == holder)) {
      suspect = false;
      continue;
    }
    if (!suspect || seen != suspect_word || holder != suspect_holder) {
      suspect = true;
      suspect_since = now;
      suspect_word = seen;
      suspect_holder = holder;
    } else if (now - suspect_since >= std::chrono::seconds(1)) {
      damaged(this, seen,
              "names thread " + std::to_string(tid) + " as its holder, but the holder recorded beside it is " +
                  (holder == 0 ? std::string("none") : "pid " + std::to_string(holder)));
    }
  }
}

bool RobustMutex::lock(const Recover& recover) {
  if (auto got = try_lock(recover)) return *got;
  return *wait(std::nullopt, recover);
}

std::optional<bool> RobustMutex::lock_until(Clock::time_point deadline, const Recover& recover) {
  if (auto got = try_lock(recover)) return got;
  return wait(deadline, recover);
}

void RobustMutex::unlock() {
  // For a recursive mutex only the outermost unlock releases it (glibc keeps the depth in
  // __data.__count); the recorded holder is cleared only then, and only by the holder.
  if (!kind_intact()) kind_damaged();
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

// Holding it, the unlock cannot fail; if it did, the lock is still held: record it again.
void RobustMutex::unlock_held_failed(bool outermost) noexcept {
  if (outermost) record_holder();
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
