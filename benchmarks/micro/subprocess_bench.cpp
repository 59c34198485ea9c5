// mpp::subprocess against the raw alternatives: run(/bin/true) (a spawn and a reap),
// check_output (plus a pipe), and communicate's throughput through `cat`. Python's
// subprocess does the same work in benchmarks/python/subprocess_bench.py.
#include <benchmark/benchmark.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "mpp/subprocess.hpp"

namespace sp = mpp::subprocess;

// subprocess.run(['/bin/true'])
static void BM_run_true(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(sp::run({"/bin/true"}).returncode);
}
BENCHMARK(BM_run_true)->UseRealTime();

// The same through PATH lookup: subprocess.run(['true']).
static void BM_run_true_path_lookup(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(sp::run({"true"}).returncode);
}
BENCHMARK(BM_run_true_path_lookup)->UseRealTime();

// The floor: fork + execv + waitpid by hand, no pipes, no fd hygiene.
static void BM_fork_exec_true(benchmark::State& state) {
  for (auto _ : state) {
    pid_t pid = fork();
    if (pid == 0) {
      char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
      execv("/bin/true", argv);
      _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    benchmark::DoNotOptimize(status);
  }
}
BENCHMARK(BM_fork_exec_true)->UseRealTime();

// subprocess.check_output(['echo', 'hi'])
static void BM_check_output_echo(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(sp::check_output({"/bin/echo", "hi"}));
}
BENCHMARK(BM_check_output_echo)->UseRealTime();

// Popen(['cat'], stdin=PIPE, stdout=PIPE).communicate(N bytes)
static void BM_communicate_cat(benchmark::State& state) {
  std::string input(static_cast<std::size_t>(state.range(0)), 'x');
  for (auto _ : state) {
    // communicate() takes its input by value (it keeps it across a timeout); Python's takes a
    // reference, so the copy is made outside the timed part.
    state.PauseTiming();
    std::string copy = input;
    state.ResumeTiming();
    sp::Popen p({"/bin/cat"}, {.stdin = sp::PIPE, .stdout = sp::PIPE});
    auto [out, err] = p.communicate(std::move(copy));
    if (out->size() != input.size()) state.SkipWithError("short output");
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_communicate_cat)->Arg(16 << 20)->UseRealTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
