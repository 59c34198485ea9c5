// What the segment tracker costs (docs/design/segment-lifetime.md): starting it with a
// process's first named segment, and then each create + release of a named segment
// ("tracked": one message at creation, one round trip at release) against the same with a
// persisted segment removed by hand (128 KiB segments) ("untracked": what a release cost before the tracker).
// Run: build/benchmarks/micro/segment_lifetime_bench --benchmark_repetitions=5
#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>
#include <chrono>
#include <cstdint>
#include <string>

#include "mpp/detail/segment.hpp"
#include "mpp/detail/segment_tracker.hpp"

using mpp::detail::Segment;

namespace {

std::string name_for(const char* what) {
  return "mpp-bench-life-" + std::string(what) + "-" + std::to_string(getpid());
}

// The first named segment of a fresh process: a forked child times its first create (the
// tracker's start: two forks, the re-exec when `reexec`, a handshake) and its second.
void first_create(benchmark::State& state, bool reexec, bool second) {
  for (auto _ : state) {
    int fds[2];
    if (pipe(fds) != 0) state.SkipWithError("pipe");
    pid_t pid = fork();
    if (pid == 0) {
      mpp::detail::set_segment_tracker_reexec(reexec);
      auto one = name_for("first");
      auto t0 = std::chrono::steady_clock::now();
      auto a = Segment::create(one, 1 << 17);
      auto t1 = std::chrono::steady_clock::now();
      auto b = Segment::create(one + "-2", 1 << 17);
      auto t2 = std::chrono::steady_clock::now();
      double s = std::chrono::duration<double>(second ? t2 - t1 : t1 - t0).count();
      (void)!write(fds[1], &s, sizeof s);
      _exit(0);
    }
    close(fds[1]);
    double s = 0;
    if (read(fds[0], &s, sizeof s) != sizeof s) state.SkipWithError("child failed");
    close(fds[0]);
    waitpid(pid, nullptr, 0);
    state.SetIterationTime(s);
  }
}

void BM_first_create_reexec(benchmark::State& s) { first_create(s, true, false); }
void BM_first_create_forked(benchmark::State& s) { first_create(s, false, false); }
void BM_second_create(benchmark::State& s) { first_create(s, true, true); }

void BM_create_release_tracked(benchmark::State& state) {
  auto name = name_for("tracked");
  Segment::create(name + "-warm", 1 << 17).reset();  // the tracker is running
  for (auto _ : state) Segment::create(name, 1 << 17).reset();
}

void BM_create_release_untracked(benchmark::State& state) {
  auto name = name_for("untracked");
  for (auto _ : state) {
    Segment::create(name, 1 << 17, {.persist = true}).reset();
    Segment::unlink(name);
  }
}

}  // namespace

BENCHMARK(BM_first_create_reexec)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(20);
BENCHMARK(BM_first_create_forked)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(20);
BENCHMARK(BM_second_create)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(20);
BENCHMARK(BM_create_release_tracked)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_create_release_untracked)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
