#include "mpp/detail/shared_lock.hpp"

#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <functional>

#include "mpp/detail/futex.hpp"
#include "mpp/detail/process_identity.hpp"
#include "mpp/detail/spin.hpp"
#include "mpp/errors.hpp"

namespace mpp::detail {
namespace {

// Shared locks this thread holds, to refuse a writer lock that would wait for itself. The
// total comes first, so a thread that reads nothing (the common writer) checks one word.
constexpr int kTracked = 8;
thread_local const ReaderSlots* t_reading[kTracked] = {};
thread_local int t_reading_depth[kTracked] = {};

void track(const ReaderSlots* r, int delta) noexcept {
  t_shared_locks_held += delta;
  for (int i = 0; i < kTracked; ++i) {
    if (t_reading[i] == r) {
      if ((t_reading_depth[i] += delta) == 0) t_reading[i] = nullptr;
      return;
    }
  }
  if (delta < 0) return;
  for (int i = 0; i < kTracked; ++i) {
    if (!t_reading[i]) {
      t_reading[i] = r;
      t_reading_depth[i] = delta;
      return;
    }
  }
}

bool reading(const ReaderSlots* r) noexcept {
  if (t_shared_locks_held == 0) return false;
  for (int i = 0; i < kTracked; ++i) {
    if (t_reading[i] == r) return true;
  }
  return false;
}

std::uint32_t bit(int i) noexcept { return 1u << static_cast<unsigned>(i); }

// Gives back slots taken by processes that died, except those whose bit is set in `keep`.
// A live reader between its CAS and its bit is alive, so it is never taken for dead.
void reap_dead_slots(ReaderSlots& r, std::uint32_t keep) noexcept {
  for (unsigned i = 0; i < ReaderSlots::kSlots; ++i) {
    if (keep & bit(static_cast<int>(i))) continue;
    std::uint64_t w = r.slot[i].load(std::memory_order_acquire);
    if (w != 0 && w != self_identity_word() && !identity_alive(w)) {
      r.slot[i].compare_exchange_strong(w, 0);
    }
  }
}

// With `seq` odd: waits until no live process holds a slot's bit, clearing dead ones.
void drain_readers(ReaderSlots& r) {
  // Counted while waiting, so that a reader leaving wakes this writer even when `r.seq` is
  // not the word the writer made odd (a striped lock).
  r.drainers.fetch_add(1, std::memory_order_seq_cst);
  struct Done {
    ReaderSlots& r;
    ~Done() { r.drainers.fetch_sub(1, std::memory_order_relaxed); }
  } done{r};
  bool reaped = false;
  for (;;) {
    const std::uint32_t seen = r.reader_exits.load(std::memory_order_seq_cst);
    std::uint32_t mask = r.busy.load(std::memory_order_seq_cst);
    if (mask == 0) return;
    if (!reaped) {
      reap_dead_slots(r, mask);  // slots whose owner died before it set its bit
      reaped = true;
    }
    bool live = false;
    for (; mask != 0; mask &= mask - 1) {
      const int i = __builtin_ctz(mask);
      std::uint64_t w = r.slot[i].load(std::memory_order_seq_cst);
      if (w == 0) {
        // Released since we read the mask, or a bit no reader owns (a damaged segment: a
        // reader sets its bit after claiming its slot and clears it before freeing it).
        // Cleared either way: a reader that claims the slot now sees `seq` odd and backs off.
        r.busy.fetch_and(~bit(i), std::memory_order_seq_cst);
        continue;
      }
      if (w == self_identity_word() || identity_alive(w)) {
        live = true;
        continue;
      }
      // A reader died holding its slot: its bit first (the slot still names it, so nobody
      // can claim the slot in between), then the slot.
      if ((r.busy.load(std::memory_order_seq_cst) & bit(i)) != 0 &&
          r.slot[i].load(std::memory_order_seq_cst) == w) {
        r.busy.fetch_and(~bit(i), std::memory_order_seq_cst);
        r.slot[i].compare_exchange_strong(w, 0);
      }
    }
    if (live) futex_wait(r.reader_exits, seen, Clock::now() + std::chrono::milliseconds(2));
  }
}

int claim_slot(ReaderSlots& r, std::uint64_t self) noexcept {
  // Start where this thread's id points, so the threads and processes spread over the slots.
  thread_local const unsigned start =
      static_cast<unsigned>(std::hash<pthread_t>{}(pthread_self()) ^ static_cast<unsigned>(self));
  for (unsigned k = 0; k < ReaderSlots::kSlots; ++k) {
    unsigned i = (start + k) % ReaderSlots::kSlots;
    std::uint64_t expected = 0;
    if (r.slot[i].load(std::memory_order_relaxed) == 0 &&
        r.slot[i].compare_exchange_strong(expected, self, std::memory_order_seq_cst)) {
      r.busy.fetch_or(bit(static_cast<int>(i)), std::memory_order_seq_cst);
      return static_cast<int>(i);
    }
  }
  return -1;
}

void release_slot(ReaderSlots& r, int i) noexcept {
  r.busy.fetch_and(~bit(i), std::memory_order_seq_cst);
  r.slot[i].store(0, std::memory_order_release);
  if ((r.seq.load(std::memory_order_seq_cst) & 1) != 0 || r.drainers.load(std::memory_order_seq_cst) != 0) {
    r.reader_exits.fetch_add(1, std::memory_order_seq_cst);
    futex_wake_all(r.reader_exits);
  }
}

// Makes `seq` odd (a writer is active); the mutex holder is the only one that changes it.
void mark_writing(std::atomic<std::uint32_t>& seq) noexcept { mark_writing_inline(seq); }

void mark_written(std::atomic<std::uint32_t>& seq) noexcept {
  const std::uint32_t s = seq.load(std::memory_order_relaxed);
  if ((s & 1) != 0) seq.store(s + 1, std::memory_order_release);
}

// What RobustMutex runs when a holder died: every reader gone, then the object's repair.
// One std::function for the whole program (the hot path builds none): it reads the object
// to repair from this thread's variables, set just before each lock.
}  // namespace

// One object for the whole program, built before main (namespace scope, not a
// function-local static whose guard every lock would test).
const RobustMutex::Recover recover_dead_holder = [] {
  // Copied first: the repair may take another lock, which sets these again.
  ReaderSlots& r = *t_recover_slots;
  std::atomic<std::uint32_t>& seq = *t_recover_seq;
  const RecoverRef rec = t_recover;
  mark_writing(seq);
  after_lock_fence();
  drain_readers(r);
  rec();
};

void drain_readers_after_lock(RobustMutex& m, std::atomic<std::uint32_t>& seq, ReaderSlots& r) {
  try {
    drain_readers(r);
  } catch (...) {
    unlock_exclusive(m, seq);
    throw;
  }
}

namespace {

// The mutex was held at the first try: a short spin first (critical sections are a few
// hundred ns, a futex sleep and wake-up costs microseconds and two system calls), then sleep.
[[gnu::noinline]] bool lock_mutex_contended(RobustMutex& m) {
  constexpr int kSpins = 64;
  for (int k = 0; k < kSpins; ++k) {
    for (unsigned p = 0; p < 8; ++p) cpu_relax();
    if (__atomic_load_n(&m.native()->__data.__lock, __ATOMIC_RELAXED) == 0) {
      if (auto got = m.try_lock(recover_dead_holder)) return *got;
    }
  }
  return m.lock(recover_dead_holder);
}

// Locks the mutex; a dead previous holder's state is repaired with every reader gone.
bool lock_mutex(RobustMutex& m, std::atomic<std::uint32_t>& seq, ReaderSlots& r, RecoverRef recover) {
  set_recover_context(r, seq, recover);
  if (auto got = m.try_lock(recover_dead_holder)) return *got;
  return lock_mutex_contended(m);
}

}  // namespace

pid_t current_pid() noexcept { return self_pid(); }

bool lock_exclusive(RobustMutex& m, ReaderSlots& r, RecoverRef recover) {
  return lock_exclusive(m, r.seq, r, recover);
}

void unlock_exclusive(RobustMutex& m, ReaderSlots& r) noexcept { unlock_exclusive(m, r.seq); }

bool lock_exclusive(RobustMutex& m, std::atomic<std::uint32_t>& seq, ReaderSlots& r,
                    RecoverRef recover) {
  if (reading(&r)) {
    throw ValueError("cannot change a shared object while this thread reads it (inside "
                     "for_each or while a read guard lives); end the read first");
  }
  bool recovered = lock_mutex(m, seq, r, recover);
  mark_writing(seq);
  after_lock_fence();
  if (r.busy.load(std::memory_order_seq_cst) != 0) drain_readers_after_lock(m, seq, r);
  return recovered;
}

void unlock_exclusive(RobustMutex& m, std::atomic<std::uint32_t>& seq) noexcept {
  unlock_exclusive_inline(m, seq);
}

bool lock_writer_mutex(RobustMutex& m, std::atomic<std::uint32_t>& seq, ReaderSlots& r,
                       RecoverRef recover) {
  return lock_mutex(m, seq, r, recover);
}

void mark_not_writing(std::atomic<std::uint32_t>& seq) noexcept { mark_written(seq); }

int claim_reader_slot(ReaderSlots& r) noexcept { return claim_slot(r, self_identity_word()); }

void release_reader_slot(ReaderSlots& r, int slot) noexcept { release_slot(r, slot); }

void reap_dead_reader_slots(ReaderSlots& r) noexcept {
  reap_dead_slots(r, r.busy.load(std::memory_order_seq_cst));
}

void track_reading(const ReaderSlots& r, int delta) noexcept { track(&r, delta); }

int try_lock_shared_fast(RobustMutex& m, ReaderSlots& r) noexcept {
  if ((r.seq.load(std::memory_order_relaxed) & 1) != 0) return -1;
  int i = claim_slot(r, self_identity_word());
  if (i < 0) return -1;
  if (!writer_present(m, r.seq)) {
    track(&r, 1);
    return i;
  }
  release_slot(r, i);
  return -1;
}

int lock_shared(RobustMutex& m, ReaderSlots& r, RecoverRef recover) {
  int i = try_lock_shared_fast(m, r);
  return i >= 0 ? i : lock_shared_slow(m, r, recover);
}

int lock_shared_slow(RobustMutex& m, ReaderSlots& r, RecoverRef recover) {
  // A writer is active (or died active), or every slot is busy: queue on the mutex.
  lock_mutex(m, r.seq, r, recover);
  mark_written(r.seq);  // nobody writes while we hold the mutex (a dead writer's state is repaired)
  const std::uint64_t self = self_identity_word();
  int i = claim_slot(r, self);
  if (i < 0) {
    reap_dead_slots(r, r.busy.load(std::memory_order_seq_cst));
    i = claim_slot(r, self);
  }
  if (i >= 0) m.unlock();
  track(&r, 1);
  return i;  // -1: we read holding the mutex
}

// A reader's validated read takes a few hundred ns once no writer interferes (two or three
// cache-line transfers); the bound only matters when the reader asking was descheduled or
// died.
void wait_for_gap_readers(ReaderSlots& r) noexcept {
  constexpr auto kBound = std::chrono::microseconds(3);
  const auto until = Clock::now() + kBound;
  for (int k = 1; r.gap_wanted.load(std::memory_order_relaxed) != 0; ++k) {
    cpu_relax();
    if (k % 32 == 0 && Clock::now() >= until) break;
  }
  gap_used(r);
}

void unlock_shared(RobustMutex& m, ReaderSlots& r, int slot) noexcept {
  track(&r, -1);
  if (slot >= 0) {
    release_slot(r, slot);
  } else {
    try {
      m.unlock();
    } catch (...) {
    }
  }
}

}  // namespace mpp::detail
