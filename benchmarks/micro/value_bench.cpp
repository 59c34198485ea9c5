// Value increments, Lock round trips and Event ping-pong, in one process and between two
// forked processes. The Python side of the comparison is benchmarks/python/value_bench.py,
// which prints the same operations measured through Python's multiprocessing.
//
// Two-process benchmarks fork one partner per benchmark run. Partner and parent meet on an
// mpp::Barrier before and after each batch, then spin on a shared counter until both are
// running (a woken process can take longer to be scheduled than a batch takes), so the
// batches overlap and contend. The time of a batch covers both processes' work, so
// items_per_second is the total rate of both.
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>

#include "mpp/sync.hpp"
#include "mpp/value.hpp"

namespace {

constexpr std::int64_t kBatch = 100'000;

// Forks a partner that runs `work()` once per batch, in step with the parent, until told
// to stop; the parent's loop does the same work, so each batch is 2 * kBatch operations.
class Partner {
 public:
  explicit Partner(std::function<void()> work) : start_(2), done_(2) {
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      for (;;) {
        start_.wait();
        if (stop_.is_set()) _exit(0);
        meet();
        work();
        done_.wait();
      }
    }
  }
  ~Partner() {
    stop_.set();
    start_.wait();
    int status;
    waitpid(pid_, &status, 0);
  }
  void begin() {
    start_.wait();
    meet();
  }
  void end() { done_.wait(); }

 private:
  // Both processes increment the gate once per batch and spin until it is even again.
  void meet() {
    auto gate = gate_.atomic_ref();
    auto target = (gate.fetch_add(1) + 2) & ~std::uint64_t{1};
    while (gate.load() < target) {
    }
  }

  mpp::Barrier start_, done_;
  mpp::Value<std::uint64_t> gate_{0};
  mpp::Event stop_;
  pid_t pid_;
};

void increments_locked(mpp::Value<std::int64_t>& v) {
  for (std::int64_t i = 0; i < kBatch; ++i) {
    auto g = v.get_lock().guard();
    v.set_value(v.value() + 1);
  }
}

void increments_fetch_add(mpp::Value<std::int64_t>& v) {
  for (std::int64_t i = 0; i < kBatch; ++i) v.fetch_add(1);
}

void increments_atomic(mpp::Value<std::int64_t>& v) {
  for (std::int64_t i = 0; i < kBatch; ++i) v.atomic_ref().fetch_add(1);
}

void lock_round_trips(mpp::Lock& lock) {
  for (std::int64_t i = 0; i < kBatch; ++i) {
    lock.acquire();
    lock.release();
  }
}

// Runs `work()` (kBatch operations) per iteration, in this process and, for range(0) == 2,
// in step in a forked partner too.
template <class Work>
void in_step(benchmark::State& state, Work work) {
  const std::int64_t procs = state.range(0);
  std::unique_ptr<Partner> partner;
  if (procs == 2) partner = std::make_unique<Partner>(work);
  for (auto _ : state) {
    if (partner) partner->begin();
    work();
    if (partner) partner->end();
  }
  state.SetItemsProcessed(state.iterations() * kBatch * procs);
  state.counters["processes"] = static_cast<double>(procs);
}

template <void (*Work)(mpp::Value<std::int64_t>&)>
void BM_Value(benchmark::State& state) {
  mpp::Value<std::int64_t> v(0);
  in_step(state, [&] { Work(v); });
  if (v.value() != state.iterations() * kBatch * state.range(0)) state.SkipWithError("lost increments");
}

// "locked": Python's `with v.get_lock(): v.value += 1` (guard, value(), set_value()).
void BM_ValueIncrementLocked(benchmark::State& s) { BM_Value<increments_locked>(s); }
// fetch_add: one lock round trip per increment.
void BM_ValueFetchAdd(benchmark::State& s) { BM_Value<increments_fetch_add>(s); }
// atomic_ref().fetch_add: the bare hardware atomic (Python's RawValue has none).
void BM_ValueAtomicRef(benchmark::State& s) { BM_Value<increments_atomic>(s); }

void BM_LockAcquireRelease(benchmark::State& state) {
  mpp::Lock lock;
  in_step(state, [&] { lock_round_trips(lock); });
}

// One iteration is a round trip: the parent sets ping, the partner wakes, clears it and
// sets pong, the parent wakes. Both sides sleep on futexes (no spinning).
void BM_EventPingPong(benchmark::State& state) {
  mpp::Event ping, pong, stop;
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;) {
      ping.wait();
      ping.clear();
      if (stop.is_set()) _exit(0);
      pong.set();
    }
  }
  for (auto _ : state) {
    ping.set();
    pong.wait();
    pong.clear();
  }
  stop.set();
  ping.set();
  int status;
  waitpid(pid, &status, 0);
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK(BM_ValueIncrementLocked)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_ValueFetchAdd)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_ValueAtomicRef)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_LockAcquireRelease)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_EventPingPong)->UseRealTime();

BENCHMARK_MAIN();
