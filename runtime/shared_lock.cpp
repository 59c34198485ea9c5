#include "mpp/detail/shared_lock.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <functional>

#include "mpp/detail/futex.hpp"
#include "mpp/errors.hpp"

namespace mpp::detail {
namespace {

std::atomic<pid_t> g_pid{0};

void refresh_pid() noexcept { g_pid.store(getpid(), std::memory_order_relaxed); }

bool alive(pid_t pid) noexcept {
  if (pid == current_pid()) return true;
  return kill(pid, 0) == 0 || errno == EPERM;
}

// Shared locks this thread holds, to refuse a writer lock that would wait for itself.
constexpr int kTracked = 8;
thread_local const ReaderSlots* t_reading[kTracked] = {};
thread_local int t_reading_depth[kTracked] = {};

void track(const ReaderSlots* r, int delta) noexcept {
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
  for (int i = 0; i < kTracked; ++i) {
    if (t_reading[i] == r) return true;
  }
  return false;
}

// With `writer` set: waits until no live process holds a slot, clearing dead ones.
void drain_readers(ReaderSlots& r) {
  for (;;) {
    std::uint32_t seen = r.reader_exits.load(std::memory_order_seq_cst);
    bool busy = false;
    for (auto& s : r.slot) {
      std::int32_t p = s.pid.load(std::memory_order_seq_cst);
      if (p == 0) continue;
      if (alive(p)) {
        busy = true;
      } else {
        s.pid.compare_exchange_strong(p, 0);  // a reader died holding its slot
      }
    }
    if (!busy) return;
    futex_wait(r.reader_exits, seen, Clock::now() + std::chrono::milliseconds(2));
  }
}

int claim_slot(ReaderSlots& r, pid_t pid) noexcept {
  // Start where this thread's id points, so the threads and processes spread over the slots.
  thread_local const unsigned start =
      static_cast<unsigned>(std::hash<pthread_t>{}(pthread_self()) ^ static_cast<unsigned>(pid));
  for (unsigned k = 0; k < ReaderSlots::kSlots; ++k) {
    unsigned i = (start + k) % ReaderSlots::kSlots;
    std::int32_t expected = 0;
    if (r.slot[i].pid.load(std::memory_order_relaxed) == 0 &&
        r.slot[i].pid.compare_exchange_strong(expected, pid, std::memory_order_seq_cst)) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

void release_slot(ReaderSlots& r, int i) noexcept {
  r.slot[i].pid.store(0, std::memory_order_seq_cst);
  if (r.writer.load(std::memory_order_seq_cst) != 0) {
    r.reader_exits.fetch_add(1, std::memory_order_seq_cst);
    futex_wake_all(r.reader_exits);
  }
}

// Locks the mutex; a dead previous holder's state is repaired with every reader gone.
bool lock_mutex(RobustMutex& m, ReaderSlots& r, const RobustMutex::Recover& recover) {
  return m.lock([&] {
    r.writer.store(1, std::memory_order_seq_cst);
    drain_readers(r);
    if (recover) recover();
  });
}

}  // namespace

pid_t current_pid() noexcept {
  pid_t p = g_pid.load(std::memory_order_relaxed);
  if (p == 0) {
    static const int registered = pthread_atfork(nullptr, nullptr, refresh_pid);
    (void)registered;
    refresh_pid();
    p = g_pid.load(std::memory_order_relaxed);
  }
  return p;
}

bool lock_exclusive(RobustMutex& m, ReaderSlots& r, const RobustMutex::Recover& recover) {
  if (reading(&r)) {
    throw ValueError("cannot change a shared object while this thread reads it (inside "
                     "for_each or while a read guard lives); end the read first");
  }
  bool recovered = lock_mutex(m, r, recover);
  r.writer.store(1, std::memory_order_seq_cst);
  try {
    drain_readers(r);
  } catch (...) {
    unlock_exclusive(m, r);
    throw;
  }
  return recovered;
}

void unlock_exclusive(RobustMutex& m, ReaderSlots& r) noexcept {
  r.writer.store(0, std::memory_order_seq_cst);
  try {
    m.unlock();
  } catch (...) {
  }
}

int try_lock_shared_fast(ReaderSlots& r) noexcept {
  if (r.writer.load(std::memory_order_relaxed) != 0) return -1;
  int i = claim_slot(r, current_pid());
  if (i < 0) return -1;
  if (r.writer.load(std::memory_order_seq_cst) == 0) {
    track(&r, 1);
    return i;
  }
  release_slot(r, i);
  return -1;
}

int lock_shared(RobustMutex& m, ReaderSlots& r, const RobustMutex::Recover& recover) {
  int i = try_lock_shared_fast(r);
  return i >= 0 ? i : lock_shared_slow(m, r, recover);
}

int lock_shared_slow(RobustMutex& m, ReaderSlots& r, const RobustMutex::Recover& recover) {
  const pid_t pid = current_pid();
  // A writer is active (or died active), or every slot is busy: queue on the mutex.
  lock_mutex(m, r, recover);
  int i;
  r.writer.store(0, std::memory_order_seq_cst);  // nobody writes while we hold the mutex
  i = claim_slot(r, pid);
  if (i >= 0) m.unlock();
  track(&r, 1);
  return i;  // -1: we read holding the mutex
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
