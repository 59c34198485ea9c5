// What a growing segment costs (docs/design/segment-growth.md). A program run by hand, not
// a Google Benchmark (its figures are whole fills and memory use, with the variants
// interleaved per repetition):
//
//   segment_bench [--gib G] [--reps R]
//
//   fill     G GiB of 100-byte values set into a dict of a default Manager (which starts at
//            256 KiB and grows) vs the same fill into a Manager created at full size up
//            front (anonymous as well, so like with like); sets per second, and the ratio.
//   create   a default Manager's creation time (median of 2000) and the memory it holds
//            until used: resident pages of this process plus the pages of its memfd.
//   erase    a dict of G/2 GiB of 100-byte values, filled then cleared: the segment's
//            pages and this process's RSS before and after, and whether the freed space
//            serves a block of another size (a quarter of free_bytes()).
//
// Built with the other micro-benchmarks (benchmarks/CMakeLists.txt globs micro/*.cpp);
// links Google Benchmark without using it.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include "mpp/manager.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// CPU time of this thread (user + system, so a growth's fallocate counts): on a shared,
// busy machine it measures the work, where wall time also measures the waiting.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Resident bytes of this process (its own mapping of shared pages included).
std::size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

// Bytes of memory held by this process's anonymous segments (their memfds' pages).
std::size_t memfd_bytes() {
  std::size_t total = 0;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return 0;
  while (dirent* e = readdir(d)) {
    std::string path = std::string("/proc/self/fd/") + e->d_name;
    char target[256];
    ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
    if (n <= 0 || std::strncmp(target, "/memfd:mpp-segment", 18) != 0) continue;
    struct stat st {};
    if (stat(path.c_str(), &st) == 0) total += static_cast<std::size_t>(st.st_blocks) * 512;
  }
  closedir(d);
  return total;
}

double mib(std::size_t b) { return static_cast<double>(b) / (1 << 20); }

struct Fill {
  double seconds = 0;  // CPU seconds
  double wall = 0;
  std::size_t segment_bytes = 0;
};

Fill fill(mpp::Manager& m, std::size_t entries) {
  auto d = m.dict<long, std::string>("fill");
  const std::string value(100, 'v');
  auto t0 = Clock::now();
  const double c0 = cpu_seconds();
  for (std::size_t i = 0; i < entries; ++i) d.set(static_cast<long>(i), value);
  return {cpu_seconds() - c0, seconds_since(t0), m.size()};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  double gib = 2;
  int reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--gib") == 0) gib = std::atof(argv[i + 1]);
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::atoi(argv[i + 1]);
  }
  const auto entries = static_cast<std::size_t>(gib * (1 << 30) / 100);

  // fill: the growing variant first learns the size the data needs; the up-front variant
  // is then created at that size. Order alternates per repetition.
  std::size_t needed = 0;
  {
    mpp::Manager probe;
    needed = fill(probe, entries).segment_bytes;
  }
  std::vector<double> grow_s, upfront_s, ratio, upfront_create_s, grow_wall, upfront_wall;
  for (int r = 0; r < reps; ++r) {
    for (int k = 0; k < 2; ++k) {
      if ((k == 0) == (r % 2 == 0)) {
        mpp::Manager m;
        auto f = fill(m, entries);
        grow_s.push_back(f.seconds);
        grow_wall.push_back(f.wall);
      } else {
        const double c0 = cpu_seconds();
        mpp::Manager m(needed);  // anonymous and fixed: all of it reserved at creation
        upfront_create_s.push_back(cpu_seconds() - c0);
        auto f = fill(m, entries);
        upfront_s.push_back(f.seconds);
        upfront_wall.push_back(f.wall);
      }
    }
    ratio.push_back(grow_s.back() / upfront_s.back());
  }
  std::printf("fill: %zu sets of 100-byte values (%.2f GiB), segment grows to %.0f MiB\n", entries,
              gib, mib(needed));
  std::printf("  growing default Manager: %.2f CPU s median (%.2f s wall), %.2f M sets per CPU s\n",
              median(grow_s), median(grow_wall), static_cast<double>(entries) / median(grow_s) / 1e6);
  std::printf("  full size up front:      %.2f CPU s median (%.2f s wall), %.2f M sets per CPU s "
              "(+ %.2f CPU s to create it)\n",
              median(upfront_s), median(upfront_wall),
              static_cast<double>(entries) / median(upfront_s) / 1e6, median(upfront_create_s));
  std::printf("  CPU time ratio growing/up-front: median %.3f, min %.3f, max %.3f (%d reps)\n",
              median(ratio), *std::min_element(ratio.begin(), ratio.end()),
              *std::max_element(ratio.begin(), ratio.end()), reps);

  // create
  {
    std::vector<double> us;
    for (int i = 0; i < 2000; ++i) {
      auto t0 = Clock::now();
      mpp::Manager m;
      us.push_back(seconds_since(t0) * 1e6);
    }
    const std::size_t rss0 = rss_bytes(), fd0 = memfd_bytes();
    mpp::Manager m;
    const std::size_t rss1 = rss_bytes(), fd1 = memfd_bytes();
    std::printf("create: default Manager in %.1f us median (%.1f us p90); holds %.0f KiB of "
                "segment pages, %.0f KiB more RSS\n",
                median(us), [&] {
                  std::sort(us.begin(), us.end());
                  return us[us.size() * 9 / 10];
                }(),
                static_cast<double>(fd1 - fd0) / 1024, static_cast<double>(rss1 - rss0) / 1024);
  }

  // erase
  {
    mpp::Manager m;
    auto d = m.dict<long, std::string>("erase");
    const std::string value(100, 'e');
    const std::size_t n = entries / 2;
    for (std::size_t i = 0; i < n; ++i) d.set(static_cast<long>(i), value);
    const std::size_t full_fd = memfd_bytes(), full_rss = rss_bytes(), full_size = m.size();
    d.clear();
    const std::size_t after_fd = memfd_bytes(), after_rss = rss_bytes();
    const std::size_t quarter = full_size / 4;
    bool served = false;
    try {
      void* p = mpp::detail::Access::segment(m)->allocate(quarter);
      served = m.size() == full_size;  // served without growing
      mpp::detail::Access::segment(m)->deallocate(p);
    } catch (const mpp::SegmentFull&) {
    }
    std::printf("erase: %zu entries (%.2f GiB of values) in a %.0f MiB segment, then clear():\n", n,
                gib / 2, mib(full_size));
    std::printf("  segment pages %.0f -> %.0f MiB, RSS %.0f -> %.0f MiB (nothing is returned to "
                "the system)\n",
                mib(full_fd), mib(after_fd), mib(full_rss), mib(after_rss));
    std::printf("  one block of %.0f MiB (a quarter of the segment) served from the freed space "
                "without growing: %s\n",
                mib(quarter), served ? "yes" : "no");
  }
  return 0;
}
