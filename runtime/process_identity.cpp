#include "mpp/detail/process_identity.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace mpp::detail {
namespace {

std::atomic<pid_t> g_pid{0};
std::atomic<std::uint64_t> g_ticks{0};

void refresh() noexcept {
  pid_t p = getpid();
  g_ticks.store(process_start_ticks(p), std::memory_order_relaxed);
  g_pid.store(p, std::memory_order_release);
}

void ensure() noexcept {
  if (g_pid.load(std::memory_order_acquire) != 0) return;
  static const int registered = pthread_atfork(nullptr, nullptr, [] {
    g_pid.store(0, std::memory_order_relaxed);  // recomputed lazily in the child
    g_self_identity_word.store(0, std::memory_order_relaxed);
  });
  (void)registered;
  refresh();
}

}  // namespace

std::uint64_t process_start_ticks(pid_t pid) noexcept {
  if (pid <= 0) return 0;
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  // The command name (field 2) is in parentheses and may hold spaces and ')': the fields
  // after it start past the LAST ')'.
  char* p = std::strrchr(buf, ')');
  if (!p) return 0;
  // Field 3 (state) follows ") "; starttime is field 22, i.e. 19 more fields after state.
  int field = 2;
  for (++p; *p && field < 22; ++p) {
    if (*p == ' ') ++field;
  }
  if (field != 22) return 0;
  std::uint64_t v = 0;
  for (; *p >= '0' && *p <= '9'; ++p) v = v * 10 + static_cast<std::uint64_t>(*p - '0');
  return v;
}

pid_t self_pid() noexcept {
  ensure();
  return g_pid.load(std::memory_order_relaxed);
}

std::uint64_t self_start_ticks() noexcept {
  ensure();
  return g_ticks.load(std::memory_order_relaxed);
}

std::uint64_t self_identity_word_slow() noexcept {
  ensure();  // registers the fork handler that clears the cache before the cache is filled
  const std::uint64_t w = identity_word(g_pid.load(std::memory_order_relaxed), g_ticks.load(std::memory_order_relaxed));
  g_self_identity_word.store(w, std::memory_order_relaxed);
  return w;
}

bool process_alive(pid_t pid, std::uint64_t start_ticks) noexcept {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno != EPERM) return false;
  if (start_ticks == 0) return true;
  std::uint64_t now = process_start_ticks(pid);
  // 0: the process is gone, or /proc is not readable for it (then the pid alone decides).
  return now == 0 ? kill(pid, 0) == 0 || errno == EPERM : now == start_ticks;
}

bool identity_alive(std::uint64_t word) noexcept {
  pid_t pid = identity_pid(word);
  std::uint64_t tick_half = word >> 32;
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno != EPERM) return false;
  // A zero tick half is written only by a process that could not read its own start time
  // (no /proc): if this one can, no live mpp process wrote it (kernel threads, whose pids a
  // damaged word can name, are no readers).
  if (tick_half == 0) return self_start_ticks() == 0;
  std::uint64_t now = process_start_ticks(pid);
  if (now == 0) return kill(pid, 0) == 0 || errno == EPERM;
  return (now & 0xffffffffULL) == tick_half;
}

}  // namespace mpp::detail
