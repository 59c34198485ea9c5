#include "leftovers.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace bench {
namespace {

constexpr char kPrefix[] = "mpp-bench-";

// Filled before the handler is installed, read by it: plain arrays, no allocation there.
char g_dirs[2][512];
char g_own_prefix[64];

// A loop rather than a library call: the signal handler uses it.
bool starts_with(const char* s, const char* prefix) {
  for (; *prefix != '\0'; ++s, ++prefix) {
    if (*s != *prefix) return false;
  }
  return true;
}

// Calls f(dirfd, name) for each entry of `dir`, by getdents64 (readdir allocates: not for a
// signal handler).
template <class F>
void for_each_entry(const char* dir, F&& f) {
  const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  alignas(8) char buf[8192];
  for (;;) {
    const long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      const auto* d = reinterpret_cast<const struct dirent64*>(buf + off);
      f(fd, d->d_name);
      off += d->d_reclen;
    }
  }
  close(fd);
}

void on_signal(int sig) {
  const int saved = errno;
  for (const char* dir : g_dirs) {
    for_each_entry(dir, [](int fd, const char* name) {
      if (starts_with(name, g_own_prefix)) unlinkat(fd, name, 0);
    });
  }
  errno = saved;
  signal(sig, SIG_DFL);
  raise(sig);
}

void fill_dirs() {
  std::snprintf(g_dirs[0], sizeof g_dirs[0], "/dev/shm");
  std::error_code ec;
  const std::string tmp = std::filesystem::temp_directory_path(ec).string();
  std::snprintf(g_dirs[1], sizeof g_dirs[1], "%s", ec ? "/tmp" : tmp.c_str());
}

}  // namespace

void remove_stale_bench_files() {
  fill_dirs();
  for (const char* dir : g_dirs) {
    for_each_entry(dir, [](int fd, const char* name) {
      if (!starts_with(name, kPrefix)) return;
      const char* digits = name + sizeof kPrefix - 1;
      char* end = nullptr;
      const long pid = std::strtol(digits, &end, 10);
      if (end == digits || (*end != '-' && *end != '\0') || pid <= 0) return;
      if (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) unlinkat(fd, name, 0);
    });
  }
}

void remove_bench_files_on_signal() {
  fill_dirs();
  std::snprintf(g_own_prefix, sizeof g_own_prefix, "%s%ld-", kPrefix, static_cast<long>(getpid()));
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
}

}  // namespace bench
