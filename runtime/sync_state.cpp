#include "mpp/detail/sync_state.hpp"

#include <cstdint>
#include <string>

#include "mpp/detail/segment.hpp"
#include "mpp/errors.hpp"

namespace mpp::detail {

std::uint32_t checked_semaphore_value(int value) {
  if (value < 0) {
    throw ValueError("a semaphore's initial value must be >= 0, not " + std::to_string(value));
  }
  // int's maximum is SemaphoreState::kMaxValue: every non-negative int is a valid value.
  return static_cast<std::uint32_t>(value);
}

std::uint32_t checked_parties(unsigned parties) {
  if (parties == 0) throw ValueError("a Barrier needs at least 1 party");
  if (parties > 0x7fffffffu) throw ValueError("a Barrier's parties must be at most 2^31 - 1");
  return parties;
}

void sleep_on(std::atomic<std::uint32_t>& word, std::uint32_t expected,
              std::optional<Clock::time_point> deadline) noexcept {
  auto cap = Clock::now() + kRecheckInterval;
  futex_wait(word, expected, deadline && *deadline < cap ? *deadline : cap);
}

void BarrierState::end_generation(bool as_broken) noexcept {
  auto g = gen.load(std::memory_order_relaxed);
  auto bit = std::uint64_t{1} << (g % 64);
  if (as_broken) {
    broken_history.fetch_or(bit, std::memory_order_relaxed);
  } else {
    broken_history.fetch_and(~bit, std::memory_order_relaxed);
  }
  // The one store that ends the generation: it releases the waiters and, since count_gen no
  // longer matches, empties the count.
  gen.store(g + 1, std::memory_order_release);
  futex_wake_all(gen);
}

void BarrierState::recover() noexcept {
  auto arrived = arrivals();
  if (arrived >= parties) {
    // The last arrival died before it released the others: inside the action, or before the
    // release was published. Python breaks the barrier when the action fails; so does mpp.
    broken.store(1, std::memory_order_relaxed);
    end_generation(true);
  } else if (broken.load(std::memory_order_relaxed) != 0 && arrived > 0) {
    // abort() or a timed-out wait() died between breaking the barrier and ending the
    // generation its waiters sleep on.
    end_generation(true);
  }
  // The holder may have ended a generation and died before it woke the sleepers.
  futex_wake_all(gen);
}

std::pair<void*, std::shared_ptr<Segment>> standalone_memory(std::size_t bytes,
                                                             std::size_t align) {
  // A segment with one directory entry (unused) and a heap with room for this one block: the
  // header, directory and heap bookkeeping, the heap's minimum, the block rounded up to its
  // size class (at most a quarter more), and the alignment slide.
  auto up = [](std::size_t n, std::size_t a) { return (n + a - 1) / a * a; };
  std::size_t fixed = up(sizeof(SegmentHeader), 64) + up(sizeof(DirectoryEntry), 64) +
                      up(sizeof(HeapHeader), 64) + 4096 + 2 * align + 4 * BLOCK_HEADER_BYTES;
  if (bytes > (SIZE_MAX - fixed) / 2) {
    throw ValueError("cannot make a shared object of " + std::to_string(bytes) + " bytes");
  }
  auto segment = Segment::anonymous(up(fixed + bytes + bytes / 4 + 64, 4096), 1);
  void* memory = segment->allocate(bytes, align);
  return {memory, std::move(segment)};
}

}  // namespace mpp::detail
