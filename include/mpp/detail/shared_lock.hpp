// A readers-writer lock for objects in shared memory that survives the death of any holder,
// reader or writer, plus a version word for optimistic reads that write nothing shared.
// Writers (and the recovery of a dead writer) use the object's RobustMutex; readers take one
// of a fixed table of slots, each holding the reader's identity (pid + process start time,
// process_identity.hpp), so a writer that waits for readers can see which of them are dead
// and clear their slots, and a recycled pid cannot pass for a dead reader. Why by hand:
// pthread_rwlock and Boost's interprocess_sharable_mutex are not robust; a reader killed
// while holding either blocks every writer forever.
//
//   seq:    even while nobody writes; a writer makes it odd after locking the mutex and even
//           again before unlocking, so an optimistic reader that saw the same even value
//           before and after its reads read a state no writer touched (a seqlock).
//   busy:   one bit per occupied slot, in the same cache line as `seq`: a writer with no
//           reader about touches the mutex and this one line, nothing else.
//   reader: claim a slot (CAS 0 -> identity), set its bit in `busy`, then check the mutex
//           word and `seq`; if a writer may be active, give the slot back and queue on the
//           mutex (which recovers a dead writer), then claim a slot while holding it. With
//           every slot taken, the reader holds the mutex.
//   writer: lock the mutex (a bounded spin before the futex sleep), make `seq` odd, and if
//           `busy` is not 0 wait until every set bit belongs to a dead process (polling
//           those every few ms: a dead reader wakes nobody), clearing dead readers' bits.
// The reader's bit (a seq_cst RMW) then its load of the mutex word, against the writer's
// locking CAS then its load of `busy` (a full fence after the CAS where a locked CAS is not
// one): one of them always sees the other, and `seq` turns odd with a plain store.
//
// A reader killed between claiming its slot and setting its bit leaves a slot taken with no
// bit: writers ignore it (it never read), and the next reader that finds no free slot, or a
// draining writer, gives back slots whose owner is dead.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "mpp/detail/robust_mutex.hpp"

namespace mpp::detail {

// This process's pid: self_pid() of process_identity.hpp, the one cache of it (getpid() is a
// system call), refreshed in forked children.
pid_t current_pid() noexcept;

// Lives in shared memory beside an ObjectHeader. Layout documented for mpp-inspect: slot[i]
// holds the identity_word (process_identity.hpp) of a process reading the object, 0 when
// free; bit i of `busy` is set while that reader may be reading.
struct ReaderSlots {
  static constexpr unsigned kSlots = 32;
  alignas(64) std::atomic<std::uint32_t> seq{0};  // odd while a writer holds the object
  std::atomic<std::uint32_t> busy{0};             // bit i: slot i holds an active reader
  std::atomic<std::uint32_t> reader_exits{0};     // futex word: bumped by readers a writer awaits
  std::atomic<std::uint32_t> drainers{0};         // writers waiting for readers (striped locks)
  std::atomic<std::uint32_t> gap_wanted{0};       // 1: an optimistic reader asks for a gap (below)
  alignas(64) std::atomic<std::uint64_t> slot[kSlots] = {};
};

// A borrowed "repair the object" callback: a function pointer and its argument, so that the
// lock's hot path builds no std::function (it is only called after a holder died).
struct RecoverRef {
  void (*fn)(void*) = nullptr;
  void* ctx = nullptr;
  template <class F>
  static RecoverRef of(F& f) noexcept {
    return {[](void* p) { (*static_cast<F*>(p))(); }, static_cast<void*>(&f)};
  }
  void operator()() const {
    if (fn) fn(ctx);
  }
};

// Shared locks this thread holds, on any object: a writer whose thread holds none skips the
// per-object "would wait for itself" check.
inline thread_local int t_shared_locks_held = 0;

// What the dead-holder recovery of the next lock repairs: set before each writer lock, read
// by `recover_dead_holder` (RobustMutex takes one std::function for the whole program).
inline thread_local ReaderSlots* t_recover_slots = nullptr;
inline thread_local std::atomic<std::uint32_t>* t_recover_seq = nullptr;
inline thread_local RecoverRef t_recover;
inline void set_recover_context(ReaderSlots& r, std::atomic<std::uint32_t>& seq, RecoverRef recover) noexcept {
  t_recover_slots = &r;
  t_recover_seq = &seq;
  t_recover = recover;
}
// Marks the writers' seq odd, drains the readers, then runs the object's repair.
extern const RobustMutex::Recover recover_dead_holder;

// The writer's half of the Dekker pair with readers is the mutex's locking CAS, then the load
// of `busy`: on x86 a locked CAS is a full barrier; elsewhere a fence makes it one.
[[gnu::always_inline]] inline void after_lock_fence() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  std::atomic_signal_fence(std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

// Makes `seq` odd (the mutex holder only); the object's stores that follow may not move
// before it (a seqlock writer).
[[gnu::always_inline]] inline void mark_writing_inline(std::atomic<std::uint32_t>& seq) noexcept {
  const std::uint32_t s = seq.load(std::memory_order_relaxed);
  if ((s & 1) == 0) seq.store(s + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
}

// With the mutex held and `seq` odd: waits for the live readers (unlocking and rethrowing
// if that fails).
void drain_readers_after_lock(RobustMutex& m, std::atomic<std::uint32_t>& seq, ReaderSlots& r);

// Exclusive lock. Runs `recover` (with every live reader gone) if a previous holder died.
// Throws ValueError when this thread holds a shared lock on the same object (it would wait
// for itself forever).
bool lock_exclusive(RobustMutex& m, ReaderSlots& r, RecoverRef recover);
void unlock_exclusive(RobustMutex& m, ReaderSlots& r) noexcept;

// The striped form (a Dict's stripes): each stripe has its own mutex and version word `seq`,
// the reader table is shared by all of them. A striped reader claims a slot, then checks
// every stripe's `seq` (striped_reader_sees_writer); a stripe's writer makes its `seq` odd
// and drains the shared table. lock_exclusive(m, r, ...) is this with seq = r.seq.
bool lock_exclusive(RobustMutex& m, std::atomic<std::uint32_t>& seq, ReaderSlots& r,
                    RecoverRef recover);
void unlock_exclusive(RobustMutex& m, std::atomic<std::uint32_t>& seq) noexcept;
// lock_exclusive with its uncontended path inline: a thread that reads nothing, a mutex
// whose word is 0 (free, its last holder not dead), no reader about.
[[gnu::always_inline]] inline bool lock_exclusive_inline(RobustMutex& m, std::atomic<std::uint32_t>& seq, ReaderSlots& r,
                                  RecoverRef recover) {
  if (t_shared_locks_held == 0 && __atomic_load_n(&m.native()->__data.__lock, __ATOMIC_RELAXED) == 0) {
    const int rc = m.try_lock_code();
    if (rc != EBUSY) {
      bool recovered = false;
      if (rc != 0) {  // the last holder died (or an error): the recovery needs its context
        set_recover_context(r, seq, recover);
        recovered = m.after_acquire(rc, recover_dead_holder);
      }
      mark_writing_inline(seq);
      after_lock_fence();
      if (r.busy.load(std::memory_order_seq_cst) != 0) drain_readers_after_lock(m, seq, r);
      return recovered;
    }
  }
  return lock_exclusive(m, seq, r, recover);
}
// unlock_exclusive, inline.
[[gnu::always_inline]] inline void unlock_exclusive_inline(RobustMutex& m, std::atomic<std::uint32_t>& seq) noexcept {
  const std::uint32_t v = seq.load(std::memory_order_relaxed);
  if ((v & 1) != 0) seq.store(v + 1, std::memory_order_release);
  m.unlock_held();
}
// Locks `m` as a writer would (a short spin, then a sleep; a dead holder's object is
// repaired with `seq` odd and every reader gone) without marking `seq` odd for the caller.
// Returns whether a recovery ran.
bool lock_writer_mutex(RobustMutex& m, std::atomic<std::uint32_t>& seq, ReaderSlots& r,
                       RecoverRef recover);
// Makes `seq` even again (the mutex holder only): nobody writes.
void mark_not_writing(std::atomic<std::uint32_t>& seq) noexcept;
// A free slot claimed with its bit set (seq_cst), or -1; and its release.
int claim_reader_slot(ReaderSlots& r) noexcept;
void release_reader_slot(ReaderSlots& r, int slot) noexcept;
// Gives back every slot whose owner died (the caller holds every writer out).
void reap_dead_reader_slots(ReaderSlots& r) noexcept;
// Counts a shared lock this thread holds (+1) or gave back (-1) on `r`, so that a writer
// lock by the same thread is refused instead of waiting for itself.
void track_reading(const ReaderSlots& r, int delta) noexcept;

// Shared lock. Returns the slot taken, or -1 when the reader holds the mutex instead (all
// slots busy). Pass the result to unlock_shared.
int lock_shared(RobustMutex& m, ReaderSlots& r, RecoverRef recover);
void unlock_shared(RobustMutex& m, ReaderSlots& r, int slot) noexcept;

// The uncontended path of lock_shared (no writer, a free slot): the slot, or -1 when the
// caller must take the slow path (lock_shared_slow, which starts from scratch).
int try_lock_shared_fast(RobustMutex& m, ReaderSlots& r) noexcept;

// Whether a writer may be active on `m` / `seq`: its mutex word is not 0 (held, being taken,
// or left by a dead holder) or `seq` is odd. What a reader checks after setting its bit: the
// writer's side of the Dekker pair is the mutex's locking CAS, then its load of `busy`.
inline bool writer_present(RobustMutex& m, const std::atomic<std::uint32_t>& seq) noexcept {
  return __atomic_load_n(&m.native()->__data.__lock, __ATOMIC_SEQ_CST) != 0 ||
         (seq.load(std::memory_order_seq_cst) & 1) != 0;
}
int lock_shared_slow(RobustMutex& m, ReaderSlots& r, RecoverRef recover);

// Optimistic reads: `read_begin` returns the even version to validate against, or an odd
// value when a writer is active (then the caller retries or takes the shared lock);
// `read_valid` says whether nothing was written since (the reads before it are then a
// consistent snapshot). Readers must bounds-check every offset they follow, as what they
// read may be torn until validated.
inline std::uint32_t read_begin(const ReaderSlots& r) noexcept {
  return r.seq.load(std::memory_order_acquire);
}
inline bool read_valid(const ReaderSlots& r, std::uint32_t v) noexcept {
  std::atomic_thread_fence(std::memory_order_acquire);
  return r.seq.load(std::memory_order_relaxed) == v;
}

// A gap for optimistic readers: a writer that re-takes the lock at once after releasing it
// (a loop of sets) would keep `seq` odd or changing for every read. A reader whose try
// failed sets `gap_wanted`; a writer about to lock (yield_to_readers) then waits while
// it is set, up to a few microseconds, and clears it itself: a reader that died asking costs
// one writer that bound once. A reader that asked clears it when its read validated.
inline void ask_for_gap(ReaderSlots& r) noexcept {
  if (r.gap_wanted.load(std::memory_order_relaxed) == 0) r.gap_wanted.store(1, std::memory_order_relaxed);
}
inline void gap_used(ReaderSlots& r) noexcept { r.gap_wanted.store(0, std::memory_order_relaxed); }
void wait_for_gap_readers(ReaderSlots& r) noexcept;
inline void yield_to_readers(ReaderSlots& r) noexcept {
  if (r.gap_wanted.load(std::memory_order_relaxed) != 0) wait_for_gap_readers(r);
}

// RAII forms.
class SharedGuard {
 public:
  template <class F>
  SharedGuard(RobustMutex& m, ReaderSlots& r, F&& recover)
      : m_(&m), r_(&r), slot_(try_lock_shared_fast(m, r)) {
    if (slot_ < 0) slot_ = lock_shared_slow(m, r, RecoverRef::of(recover));
  }
  // Builds the recovery function (make_recover() returns a callable) only when the fast
  // path fails.
  template <class F>
  SharedGuard(RobustMutex& m, ReaderSlots& r, F&& make_recover, int)
      : m_(&m), r_(&r), slot_(try_lock_shared_fast(m, r)) {
    if (slot_ < 0) {
      auto rec = make_recover();
      slot_ = lock_shared_slow(m, r, RecoverRef::of(rec));
    }
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
