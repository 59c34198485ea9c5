// mpp::Pool against Python's multiprocessing.Pool (benchmarks/python/pool_bench.py does the
// same work): tiny-task apply_async throughput, map over 1M ints with Python's default
// chunking, and start+stop of a 2-worker pool.
//
//   build/benchmarks/micro/pool_bench && python3 benchmarks/python/pool_bench.py
#include <benchmark/benchmark.h>

#include <numeric>
#include <vector>

#include "mpp/pool.hpp"

namespace {

int inc(int x) { return x + 1; }

mpp::Pool& shared_pool() {
  static mpp::Pool pool(2);
  return pool;
}

// N tiny tasks submitted with apply_async, then every result fetched (as the Python script).
void BM_PoolApplyAsyncTiny(benchmark::State& state) {
  mpp::Pool& pool = shared_pool();
  const int n = static_cast<int>(state.range(0));
  std::vector<mpp::AsyncResult<int>> rs;
  rs.reserve(static_cast<std::size_t>(n));
  for (auto _ : state) {
    rs.clear();
    for (int i = 0; i < n; ++i) rs.push_back(pool.apply_async(inc, i));
    long sum = 0;
    for (auto& r : rs) sum += r.get();
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_PoolApplyAsyncTiny)->Arg(20000)->Unit(benchmark::kMillisecond)->UseRealTime();

// map over 1M ints, default chunk size (about 4 chunks per worker, as Python's).
void BM_PoolMap1M(benchmark::State& state) {
  mpp::Pool& pool = shared_pool();
  std::vector<int> xs(1000000);
  std::iota(xs.begin(), xs.end(), 0);
  for (auto _ : state) {
    auto ys = pool.map(inc, xs);
    benchmark::DoNotOptimize(ys.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<long>(xs.size()));
}
BENCHMARK(BM_PoolMap1M)->Unit(benchmark::kMillisecond)->UseRealTime();

// Construct a 2-worker pool and destroy it (the destructor terminates, like leaving
// Python's `with Pool(2):`).
void BM_PoolStartStop2(benchmark::State& state) {
  for (auto _ : state) {
    mpp::Pool pool(2);
    benchmark::DoNotOptimize(&pool);
  }
}
BENCHMARK(BM_PoolStartStop2)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Start a 2-worker pool, run one task, close and join: a full life cycle.
void BM_PoolStartTaskJoin2(benchmark::State& state) {
  for (auto _ : state) {
    mpp::Pool pool(2);
    benchmark::DoNotOptimize(pool.apply(inc, 1));
    pool.close();
    pool.join();
  }
}
BENCHMARK(BM_PoolStartTaskJoin2)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
