// The bounded, adaptive spin that a blocked Queue or Connection call does before it sleeps
// in the kernel. A wake-up of an idle core costs 5-45 us on a VM, a cache-line transfer or a
// non-blocking system call well under 1 us: a peer that answers within the spin is caught
// without a sleep, while a caller left waiting costs at most the budget in CPU per call and
// nothing once asleep. The budget adapts per handle between a floor and a ceiling: it grows
// to twice the longest wait a spin caught and halves when the caller had to sleep anyway.
// The floor matters: a budget allowed to shrink towards zero never catches a busy peer
// again, and every message of a ping-pong then pays two sleeps.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

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

// A spin that caught its event after `waited`: the budget grows to cover twice that.
inline void spin_caught(std::uint32_t& budget_ns, std::chrono::nanoseconds waited) noexcept {
  auto want = static_cast<std::uint32_t>(std::min<std::int64_t>(kSpinMaxNs, 2 * waited.count()));
  budget_ns = std::max(budget_ns, want);
}

// A spin that ran out: the caller sleeps, and spins half as long next time.
inline void spin_missed(std::uint32_t& budget_ns) noexcept {
  budget_ns = std::max(kSpinMinNs, budget_ns / 2);
}

}  // namespace mpp::detail
