// The shared state of the synchronisation primitives (sync.hpp), as it lies in a segment.
// Each starts with an ObjectHeader, so mpp-inspect can show any of them, and each is
// written so that a process SIGKILLed at any instruction inside any operation leaves it
// valid: either the state is a single atomic word (Semaphore, Event), or the next locker of
// the header's robust mutex recomputes what the dead process left half done (Barrier).
//
// Nothing here sleeps on a pthread condition variable: waiters sleep on the futex words
// below, which the kernel forgets about when a sleeper dies.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <utility>

#include "mpp/detail/futex.hpp"
#include "mpp/detail/robust_mutex.hpp"
#include "mpp/detail/segment_format.hpp"

namespace mpp::detail {

class Segment;

// No futex sleeper in mpp's primitives sleeps longer than this without re-checking its
// condition: a process killed between publishing a change (setting an Event, releasing a
// Semaphore or Barrier) and waking the sleepers then delays them by at most this much,
// instead of leaving them asleep forever.
inline constexpr std::chrono::milliseconds kRecheckInterval{200};

// Lock and RLock: the header's robust mutex is the lock itself (normal or recursive).
struct LockState {
  ObjectHeader header;
  explicit LockState(RobustMutex::Kind kind) : header(kind) {}
};

// Semaphore and BoundedSemaphore: one atomic counter, changed only by compare-and-swap, so
// there is nothing a kill can leave half done (a unit taken by a process that then dies
// stays taken, as with Python's POSIX semaphores). The header's mutex is not used.
struct SemaphoreState {
  ObjectHeader header;
  std::atomic<std::uint32_t> value;         // the futex word
  std::atomic<std::uint32_t> sleepers{0};   // a hint: >= the live sleepers (a dead one stays counted)
  std::uint32_t max_value;                  // BoundedSemaphore's bound; kUnbounded otherwise
  static constexpr std::uint32_t kUnbounded = 0xffffffffu;
  static constexpr std::uint32_t kMaxValue = 0x7fffffffu;  // SEM_VALUE_MAX, as Python's

  SemaphoreState(std::uint32_t initial, std::uint32_t max) : value(initial), max_value(max) {}
};

// Event: one atomic flag, which is also the futex word. The header's mutex is not used.
struct EventState {
  ObjectHeader header;
  std::atomic<std::uint32_t> flag{0};
  std::atomic<std::uint32_t> sleepers{0};   // a hint, as in SemaphoreState
};

// Condition: a notification sequence number that waiters sleep on. The header's mutex is
// recursive and is the Condition's own RLock when it was made without a lock of its own.
struct ConditionState {
  ObjectHeader header{RobustMutex::Kind::recursive};
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint32_t> sleepers{0};   // a hint, as in SemaphoreState
  // The lock the Condition is bound to when it is not the header's mutex: its kind
  // (ObjectKind::lock or rlock) and its offset in the same segment (0: the header's own).
  ObjectKind lock_kind = ObjectKind::rlock;
  std::uint64_t lock_offset = 0;
};

// Barrier: generations. Arrivals count up under the header's mutex; the last arrival ends
// the generation by bumping `gen` (the futex word) with one store, which also empties the
// count, because `count` only counts while `count_gen == gen`. How each generation ended
// (released, or broken by abort/reset/timeout/a failed action) is kept in a 64-generation
// history, so a waiter learns its own generation's outcome even if it wakes late.
struct BarrierState {
  ObjectHeader header;
  std::atomic<std::uint32_t> gen{0};
  std::uint32_t parties;
  // Atomics only for the order of their stores, which a recovery depends on: count is
  // written before count_gen, and the history before gen.
  std::atomic<std::uint32_t> count{0};      // arrivals in generation count_gen
  std::atomic<std::uint32_t> count_gen{0};
  std::atomic<std::uint32_t> broken{0};
  std::atomic<std::uint64_t> broken_history{0};  // bit g % 64: generation g ended broken

  explicit BarrierState(std::uint32_t n) : parties(n) {}

  // Arrivals in the current generation. Under the mutex.
  std::uint32_t arrivals() const noexcept {
    return count_gen.load(std::memory_order_acquire) == gen.load(std::memory_order_relaxed)
               ? count.load(std::memory_order_relaxed)
               : 0;
  }
  // Ends the current generation (recording how) and wakes its waiters. Under the mutex.
  void end_generation(bool as_broken) noexcept;
  // The recovery run by the next locker after a holder died: finishes what it left half
  // done so that no waiter sleeps on a generation nobody can end.
  void recover() noexcept;
};

// A semaphore's initial value, checked: throws ValueError when it is negative.
std::uint32_t checked_semaphore_value(int value);
// A Barrier's number of parties, checked: throws ValueError for 0 or more than 2^31 - 1.
std::uint32_t checked_parties(unsigned parties);

// Sleeps on `word` while it equals `expected`, until woken, `deadline` or at most
// kRecheckInterval; the caller re-checks its condition and its deadline.
void sleep_on(std::atomic<std::uint32_t>& word, std::uint32_t expected,
              std::optional<Clock::time_point> deadline) noexcept;

// Memory for one standalone object (Lock(), Value<T>(), ...): a fresh anonymous segment,
// shared with children forked after it, holding `bytes` aligned to `align`. Throws
// OSError when the memory cannot be mapped.
std::pair<void*, std::shared_ptr<Segment>> standalone_memory(std::size_t bytes, std::size_t align);

// Constructs a State in its own anonymous segment.
template <class State, class... Args>
std::pair<State*, std::shared_ptr<Segment>> make_standalone(Args&&... args) {
  auto [memory, segment] = standalone_memory(sizeof(State), alignof(State));
  return {::new (memory) State(std::forward<Args>(args)...), std::move(segment)};
}

}  // namespace mpp::detail
