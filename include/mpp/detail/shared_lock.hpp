// A readers-writer lock for objects in shared memory that survives the death of any holder,
// reader or writer. Writers (and the recovery of a dead writer) use the object's RobustMutex;
// readers take one of a fixed table of slots, each holding the reader's pid, so a writer that
// waits for readers can see which of them are dead and clear their slots. Why by hand:
// pthread_rwlock and Boost's interprocess_sharable_mutex are not robust; a reader killed
// while holding either blocks every writer forever.
//
//   reader: claim a slot (CAS 0 -> pid), then check `writer`; if a writer is active, give
//           the slot back and queue on the mutex (which recovers a dead writer), then claim
//           a slot while holding it. With every slot taken, the reader holds the mutex.
//   writer: lock the mutex, set `writer`, wait until every slot is empty or held by a dead
//           process (polling those every few ms: a dead reader wakes nobody).
// Both sides store then load with seq_cst, so one of them always sees the other.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "mpp/detail/robust_mutex.hpp"

namespace mpp::detail {

// This process's pid, cached (getpid() is a system call) and refreshed in forked children.
pid_t current_pid() noexcept;

// Lives in shared memory beside an ObjectHeader. Layout documented for mpp-inspect: a slot
// holds the pid of a process reading the object, 0 when free.
struct ReaderSlots {
  static constexpr unsigned kSlots = 16;
  struct alignas(64) Slot {
    std::atomic<std::int32_t> pid{0};
  };
  std::atomic<std::uint32_t> writer{0};        // 1 while a writer holds the object
  std::atomic<std::uint32_t> reader_exits{0};  // futex word: bumped by readers a writer awaits
  Slot slot[kSlots];
};

// Exclusive lock. Runs `recover` (with every live reader gone) if a previous holder died.
// Throws ValueError when this thread holds a shared lock on the same object (it would wait
// for itself forever).
bool lock_exclusive(RobustMutex& m, ReaderSlots& r, const RobustMutex::Recover& recover);
void unlock_exclusive(RobustMutex& m, ReaderSlots& r) noexcept;

// Shared lock. Returns the slot taken, or -1 when the reader holds the mutex instead (all
// slots busy). Pass the result to unlock_shared.
int lock_shared(RobustMutex& m, ReaderSlots& r, const RobustMutex::Recover& recover);
void unlock_shared(RobustMutex& m, ReaderSlots& r, int slot) noexcept;

// The uncontended path of lock_shared, inline (no writer, a free slot): the slot, or -1
// when the caller must take the slow path (lock_shared_slow, which starts from scratch).
int try_lock_shared_fast(ReaderSlots& r) noexcept;
int lock_shared_slow(RobustMutex& m, ReaderSlots& r, const RobustMutex::Recover& recover);

// RAII forms.
class ExclusiveGuard {
 public:
  ExclusiveGuard(RobustMutex& m, ReaderSlots& r, const RobustMutex::Recover& recover)
      : m_(&m), r_(&r) {
    lock_exclusive(m, r, recover);
  }
  ~ExclusiveGuard() {
    if (m_) unlock_exclusive(*m_, *r_);
  }
  ExclusiveGuard(ExclusiveGuard&& o) noexcept : m_(o.m_), r_(o.r_) { o.m_ = nullptr; }
  ExclusiveGuard(const ExclusiveGuard&) = delete;
  ExclusiveGuard& operator=(const ExclusiveGuard&) = delete;

 private:
  RobustMutex* m_;
  ReaderSlots* r_;
};

class SharedGuard {
 public:
  SharedGuard(RobustMutex& m, ReaderSlots& r, const RobustMutex::Recover& recover)
      : m_(&m), r_(&r), slot_(lock_shared(m, r, recover)) {}
  // Builds the recovery function only when the fast path fails.
  template <class F>
  SharedGuard(RobustMutex& m, ReaderSlots& r, F&& make_recover, int)
      : m_(&m), r_(&r), slot_(try_lock_shared_fast(r)) {
    if (slot_ < 0) slot_ = lock_shared_slow(m, r, make_recover());
  }
  ~SharedGuard() {
    if (m_) unlock_shared(*m_, *r_, slot_);
  }
  SharedGuard(SharedGuard&& o) noexcept : m_(o.m_), r_(o.r_), slot_(o.slot_) { o.m_ = nullptr; }
  SharedGuard(const SharedGuard&) = delete;
  SharedGuard& operator=(const SharedGuard&) = delete;

 private:
  RobustMutex* m_;
  ReaderSlots* r_;
  int slot_;
};

}  // namespace mpp::detail
