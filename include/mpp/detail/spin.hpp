// The bounded, adaptive spin that a blocked Queue or Connection call does before it sleeps
// in the kernel. A wake-up of an idle core costs 5-45 us on a VM, a cache-line transfer or a
// non-blocking system call well under 1 us: a peer that answers within the spin is caught
// without a sleep, while a caller left waiting costs at most the budget in CPU per call and
// nothing once asleep. The budget adapts per handle between a floor and a ceiling: it grows
// to twice the longest wait a spin caught and halves when the caller had to sleep anyway.
// The floor matters: a budget allowed to shrink towards zero never catches a busy peer
// again, and every message of a ping-pong then pays two sleeps.
#pragma once

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>

#include "mpp/detail/futex.hpp"

namespace mpp::detail {

inline constexpr std::uint32_t kSpinMinNs = 10'000;
inline constexpr std::uint32_t kSpinMaxNs = 50'000;
// After this long spinning, each poll also yields the CPU: on an oversubscribed machine the
// peer we wait for may be queued behind us on this very core, and a pure pause loop would
// keep it from running for the whole budget.
inline constexpr std::uint32_t kYieldAfterNs = 3'000;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

inline constexpr unsigned kMaxBackoff = 16;  // pause instructions between two polls, at most

// Polls `caught()` until it returns true or the budget (cut short by `deadline`) is spent,
// and adapts the budget: grown to twice the wait when caught, halved when it ran out.
// Returns whether it was caught; the caller then sleeps in the kernel. Polls back off
// exponentially: a caller that polls the peer's cache line on every message makes that
// line travel between cores per message; waiting a little lets the peer write several
// messages before we look again.
template <class Caught>
bool spin_until(Caught&& caught, std::uint32_t& budget_ns,
                std::optional<Clock::time_point> deadline = std::nullopt) {
  const auto start = Clock::now();
  auto end = start + std::chrono::nanoseconds(budget_ns);
  if (deadline && *deadline < end) end = *deadline;
  const auto yield_from = start + std::chrono::nanoseconds(kYieldAfterNs);
  for (unsigned backoff = 1;; backoff = std::min(backoff * 2, kMaxBackoff)) {
    if (caught()) {
      auto waited = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start);
      auto want = static_cast<std::uint32_t>(std::min<std::int64_t>(kSpinMaxNs, 2 * waited.count()));
      budget_ns = std::max(budget_ns, want);
      return true;
    }
    for (unsigned k = 0; k < backoff; ++k) cpu_relax();
    auto now = Clock::now();
    if (now >= end) break;
    if (now >= yield_from) sched_yield();
  }
  budget_ns = std::max(kSpinMinNs, budget_ns / 2);
  return false;
}

}  // namespace mpp::detail
