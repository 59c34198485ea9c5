// Who a process is, in a form a recycled pid cannot fake: its pid plus its start time
// (field 22 of /proc/<pid>/stat, in clock ticks since boot). Every place where a pid stored
// in shared memory decides whether a holder is alive (reader slots, queue claims, pool
// progress records, mpp-inspect's alive/DEAD) asks through here, so that a holder that died
// and whose pid now names another live process is still seen as dead.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

namespace mpp::detail {

// Start time of process `pid` in clock ticks since boot, or 0 when there is no such process
// (or /proc cannot tell). Reads /proc/<pid>/stat: a system call or three, not a hot path.
std::uint64_t process_start_ticks(pid_t pid) noexcept;

// This process's pid and start ticks, cached and refreshed in forked children.
pid_t self_pid() noexcept;
std::uint64_t self_start_ticks() noexcept;

// True when process `pid` exists and, if `start_ticks` is not 0, started at that tick (so it
// is the same process that recorded it, not a later one that reuses the pid).
bool process_alive(pid_t pid, std::uint64_t start_ticks) noexcept;

// One 64-bit word for identities claimed with a single CAS: the pid in the low 32 bits and
// the low 32 bits of the start ticks above them (497 days at 100 Hz before they wrap, far
// beyond any pid's reuse window). 0 never names a process.
constexpr std::uint64_t identity_word(pid_t pid, std::uint64_t start_ticks) noexcept {
  return (start_ticks << 32) | static_cast<std::uint32_t>(pid);
}
constexpr pid_t identity_pid(std::uint64_t word) noexcept {
  return static_cast<pid_t>(static_cast<std::uint32_t>(word));
}
// This process's identity_word, cached: 0 until first asked, and again in a forked child
// (which works its own out on first use). Inline, as every lock records its holder with it.
inline std::atomic<std::uint64_t> g_self_identity_word{0};
std::uint64_t self_identity_word_slow() noexcept;  // works it out and caches it
inline std::uint64_t self_identity_word() noexcept {
  const std::uint64_t w = g_self_identity_word.load(std::memory_order_relaxed);
  return w != 0 ? w : self_identity_word_slow();
}
// process_alive for an identity_word: the pid exists and its start ticks match in their low
// 32 bits. A word whose tick half is 0 comes from a process that could not read its start
// time (no /proc); it is checked by pid alone only where this process cannot read its own
// either, and is otherwise dead (a damaged word naming pid 2 must not be a live reader).
bool identity_alive(std::uint64_t word) noexcept;

}  // namespace mpp::detail
