// What the segment heap's allocate/free cost (docs/design/crash-contracts.md, "Corrupt
// segments": the price of the heap's checks). A program run by hand, not a Google Benchmark
// (its instruction figures come from callgrind, which needs a fixed sequence of calls):
//
//   heap_bench [--ops N]
//
// N (200,000) calls on a 64 MiB anonymous segment: 256 slots, each call picks one at random
// and frees its block if it holds one, else allocates 16..2,016 bytes (multiples of 16) into
// it. Prints this thread's CPU time per call. For instructions per call:
//
//   valgrind --tool=callgrind --callgrind-out-file=cg.out build/benchmarks/micro/heap_bench
//   callgrind_annotate --inclusive=yes cg.out | grep -E 'Segment::(allocate\(|deallocate)'
//
// and divide the two inclusive counts' sum by N.
//
// Built with the other micro-benchmarks (benchmarks/CMakeLists.txt globs micro/*.cpp);
// links Google Benchmark without using it.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <vector>

#include "mpp/detail/segment.hpp"

namespace {

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  long ops = 200'000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--ops") == 0) ops = std::atol(argv[i + 1]);
  }
  auto seg = mpp::detail::Segment::anonymous(64u << 20, 8);
  // The sequence is drawn before the clock starts: the loop measures the heap only.
  std::mt19937_64 rng(42);
  std::vector<std::size_t> sizes(static_cast<std::size_t>(ops));
  std::vector<unsigned> slots(static_cast<std::size_t>(ops));
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    sizes[i] = 16 + (rng() % 126) * 16;
    slots[i] = static_cast<unsigned>(rng() % 256);
  }
  std::vector<void*> live(256, nullptr);
  const double t0 = cpu_seconds();
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    void*& p = live[slots[i]];
    if (p) {
      seg->deallocate(p);
      p = nullptr;
    } else {
      p = seg->allocate(sizes[i]);
    }
  }
  const double t1 = cpu_seconds();
  for (void* p : live) {
    if (p) seg->deallocate(p);
  }
  std::printf("%ld allocate/free calls: %.1f ns CPU per call; free_bytes after: %zu\n", ops,
              (t1 - t0) * 1e9 / static_cast<double>(ops), seg->free_bytes());
}
