// Process-shared futex wait and wake on a 32-bit word in shared memory. Everything in mpp
// that sleeps (queues, events, semaphores, conditions, barriers) sleeps here, because a
// futex keeps no state in the kernel for a sleeper that dies: a SIGKILLed waiter cannot
// wedge anyone, unlike a pthread condition variable in shared memory.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

namespace mpp::detail {

using Clock = std::chrono::steady_clock;

// Sleeps while `*word == expected`, until woken, until `deadline` (steady clock) passes, or
// spuriously. Returns false only when the deadline passed. Callers re-check their condition.
bool futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                std::optional<Clock::time_point> deadline = std::nullopt) noexcept;

// Wakes at most `count` sleepers on `word` (INT32_MAX for all). Returns how many woke.
int futex_wake(std::atomic<std::uint32_t>& word, int count) noexcept;

inline int futex_wake_all(std::atomic<std::uint32_t>& word) noexcept {
  return futex_wake(word, 0x7fffffff);
}

// A deadline `timeout` from now, or none.
template <class Rep, class Period>
std::optional<Clock::time_point> deadline_after(std::chrono::duration<Rep, Period> timeout) {
  if (timeout < std::chrono::duration<Rep, Period>::zero()) return Clock::now();
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(timeout);
}

}  // namespace mpp::detail
