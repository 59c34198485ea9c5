// mpp::redis Queue and Dict throughput on the server of MPP_REDIS_URL, against
// redis-benchmark running the same commands on the same server in the same run.
//
//   tools/with-redis build/benchmarks/micro/redis_bench [--benchmark_filter=...]
//
// Both sides use one connection (redis-benchmark -c 1), as one mpp client does, and the
// same payloads (16-byte messages and values). "Batched" rows use mpp's batching calls
// (put_many, get_many, task_done(n), update, get_many) against redis-benchmark pipelining
// the same commands 100 deep (-P 100). A queue message's cycle is put + get + task_done:
// LPUSH, LMOVE/BLMOVE and LREM on both sides. After the Google Benchmark output, a table
// gives msgs/s or ops/s of each side and the ratio mpp / redis-benchmark, and for scale the
// same workloads on mpp's shared-memory Queue and Manager dict (one process, no network).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <mpp/manager.hpp>
#include <mpp/queue.hpp>
#include <mpp/redis/dict.hpp>
#include <mpp/redis/queue.hpp>
#include <random>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::string g_url;
std::shared_ptr<mpp::redis::Connection> g_conn;
const std::string payload = "0123456789abcdef";  // 16 bytes
constexpr int batch = 100;
constexpr int keyspace = 100000;

struct Row {
  double mpp = 0;        // msgs/s or ops/s, the last (final) run of the benchmark
  double reference = 0;  // redis-benchmark, same commands
  std::string how;       // the redis-benchmark commands behind `reference`
};
std::map<std::string, Row> g_rows;

// Requests/s of one redis-benchmark run of `command` (-c 1, -P depth).
double redis_benchmark(const std::string& command, int depth, int requests, std::string& how) {
  auto u = mpp::redis::Url::parse(g_url);
  std::string cmd = "redis-benchmark -h " + u.host + " -p " + std::to_string(u.port) +
                    " --dbnum " + std::to_string(u.db) + " -c 1 -P " + std::to_string(depth) +
                    " -n " + std::to_string(requests) + " -r " + std::to_string(keyspace) + " -q";
  if (!u.password.empty()) cmd += " -a '" + u.password + "' --no-auth-warning";
  if (!u.user.empty()) cmd += " --user '" + u.user + "'";
  std::string shown = cmd + " " + command;
  if (!how.empty()) how += "; ";
  how += "-P " + std::to_string(depth) + " " + command;
  cmd += " " + command + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("cannot run redis-benchmark");
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  pclose(p);
  // "-q" prints "<command>: 12345.67 requests per second, p50=..." (after \r progress).
  auto at = out.rfind(" requests per second");
  if (at == std::string::npos) throw std::runtime_error("redis-benchmark said: " + out);
  auto colon = out.rfind(": ", at);
  return std::stod(out.substr(colon + 2, at - colon - 2));
}

// One message's cycle LPUSH + LMOVE + LREM as redis-benchmark runs it, in msgs/s.
double reference_queue_cycle(int depth, std::string& how) {
  const std::string src = "mpp:rb:" + std::to_string(getpid()) + ":src";
  const std::string proc = "mpp:rb:" + std::to_string(getpid()) + ":proc";
  const int n = depth == 1 ? 20000 : 200000;
  g_conn->command({"DEL", src, proc});
  double push = redis_benchmark("LPUSH " + src + " " + payload, depth, n, how);
  double move = redis_benchmark("LMOVE " + src + " " + proc + " RIGHT LEFT", depth, n, how);
  double rem = redis_benchmark("LREM " + proc + " -1 " + payload, depth, n, how);
  g_conn->command({"DEL", src, proc});
  return 1.0 / (1.0 / push + 1.0 / move + 1.0 / rem);
}

double reference_dict(const std::string& op, int depth, std::string& how) {
  const std::string h = "mpp:rb:" + std::to_string(getpid()) + ":hash";
  const int n = depth == 1 ? 20000 : 200000;
  std::string fill;  // the HSETs that fill the hash for HGET are not part of the figure
  if (op == "HGET") redis_benchmark("HSET " + h + " __rand_int__ " + payload, 100, keyspace, fill);
  double r = redis_benchmark(op == "HSET" ? "HSET " + h + " __rand_int__ " + payload
                                          : "HGET " + h + " __rand_int__",
                             depth, n, how);
  if (op == "HSET") g_conn->command({"DEL", h});
  return r;
}

template <class F>
void measure(benchmark::State& state, const std::string& row, int per_iteration, F&& body) {
  auto start = Clock::now();
  for (auto _ : state) body();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  double rate = static_cast<double>(state.iterations()) * per_iteration / secs;
  state.SetItemsProcessed(state.iterations() * per_iteration);
  g_rows[row].mpp = rate;
}

std::string name(const char* what) { return "mpp:bench:" + std::to_string(getpid()) + ":" + what; }

void BM_QueueCycle(benchmark::State& state) {
  mpp::redis::Queue<std::string> q(g_conn, name("q1"));
  q.clear();
  measure(state, "queue put+get+task_done, one by one", 1, [&] {
    q.put(payload);
    benchmark::DoNotOptimize(q.get());
    q.task_done();
  });
  q.clear();
}

void BM_QueueCycleBatched(benchmark::State& state) {
  mpp::redis::Queue<std::string> q(g_conn, name("q100"));
  q.clear();
  std::vector<std::string> msgs(batch, payload);
  measure(state, "queue put_many+get_many+task_done(n), 100 a batch", batch, [&] {
    q.put_many(msgs);
    std::size_t got = 0;
    while (got < msgs.size()) {
      auto part = q.get_many(batch - got);
      got += part.size();
      q.task_done(part.size());
    }
  });
  q.clear();
}

void BM_DictSet(benchmark::State& state) {
  mpp::redis::Dict<std::int64_t, std::string> d(g_conn, name("d1"));
  std::mt19937 rng(1);
  measure(state, "dict set, one by one", 1,
          [&] { d.set(static_cast<std::int64_t>(rng() % keyspace), payload); });
  d.clear();
}

void BM_DictGet(benchmark::State& state) {
  mpp::redis::Dict<std::int64_t, std::string> d(g_conn, name("dg"));
  std::vector<std::pair<std::int64_t, std::string>> all;
  for (std::int64_t k = 0; k < keyspace; ++k) all.emplace_back(k, payload);
  d.update(all);
  std::mt19937 rng(2);
  measure(state, "dict get, one by one", 1,
          [&] { benchmark::DoNotOptimize(d.get(static_cast<std::int64_t>(rng() % keyspace))); });
  d.clear();
}

void BM_DictUpdate(benchmark::State& state) {
  mpp::redis::Dict<std::int64_t, std::string> d(g_conn, name("du"));
  std::mt19937 rng(3);
  std::vector<std::pair<std::int64_t, std::string>> pairs(batch, {0, payload});
  measure(state, "dict update, 100 pairs a call", batch, [&] {
    for (auto& p : pairs) p.first = static_cast<std::int64_t>(rng() % keyspace);
    d.update(pairs);
  });
  d.clear();
}

void BM_DictGetMany(benchmark::State& state) {
  mpp::redis::Dict<std::int64_t, std::string> d(g_conn, name("dm"));
  std::vector<std::pair<std::int64_t, std::string>> all;
  for (std::int64_t k = 0; k < keyspace; ++k) all.emplace_back(k, payload);
  d.update(all);
  std::mt19937 rng(4);
  std::vector<std::int64_t> keys(batch);
  measure(state, "dict get_many, 100 keys a call", batch, [&] {
    for (auto& k : keys) k = static_cast<std::int64_t>(rng() % keyspace);
    benchmark::DoNotOptimize(d.get_many(keys));
  });
  d.clear();
}

// For scale: the same one-by-one workloads on mpp's shared memory (one process).
std::map<std::string, double> g_shm;

void BM_ShmQueueCycle(benchmark::State& state) {
  mpp::Queue<std::string> q;
  auto start = Clock::now();
  for (auto _ : state) {
    q.put(payload);
    benchmark::DoNotOptimize(q.get());
  }
  g_shm["queue put+get+task_done, one by one"] =
      static_cast<double>(state.iterations()) /
      std::chrono::duration<double>(Clock::now() - start).count();
  state.SetItemsProcessed(state.iterations());
}

void BM_ShmDict(benchmark::State& state) {
  mpp::Manager m(std::size_t{32} << 20);
  auto d = m.dict<std::int64_t, std::string>("d");
  std::mt19937 rng(5);
  const bool set = state.range(0) == 1;
  if (!set) {
    for (std::int64_t k = 0; k < keyspace; ++k) d.set(k, payload);
  }
  auto start = Clock::now();
  for (auto _ : state) {
    auto k = static_cast<std::int64_t>(rng() % keyspace);
    if (set) {
      d.set(k, payload);
    } else {
      benchmark::DoNotOptimize(d.get(k));
    }
  }
  g_shm[set ? "dict set, one by one" : "dict get, one by one"] =
      static_cast<double>(state.iterations()) /
      std::chrono::duration<double>(Clock::now() - start).count();
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_QueueCycle)->UseRealTime()->MinTime(2);
BENCHMARK(BM_QueueCycleBatched)->UseRealTime()->MinTime(2);
BENCHMARK(BM_DictSet)->UseRealTime()->MinTime(2);
BENCHMARK(BM_DictGet)->UseRealTime()->MinTime(2);
BENCHMARK(BM_DictUpdate)->UseRealTime()->MinTime(2);
BENCHMARK(BM_DictGetMany)->UseRealTime()->MinTime(2);
BENCHMARK(BM_ShmQueueCycle)->UseRealTime();
BENCHMARK(BM_ShmDict)->Arg(1)->Arg(0)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  const char* url = std::getenv("MPP_REDIS_URL");
  if (!url || !*url) {
    std::cout << "SKIPPED: MPP_REDIS_URL is unset; run it as tools/with-redis " << argv[0]
              << " (a private redis-server) or point MPP_REDIS_URL at a server\n";
    return 0;
  }
  g_url = url;
  try {
    g_conn = std::make_shared<mpp::redis::Connection>(g_url);
    benchmark::RunSpecifiedBenchmarks();
    // The references, measured after mpp on the same server.
    auto ref = [](const std::string& row, auto f) {
      auto it = g_rows.find(row);
      if (it != g_rows.end()) it->second.reference = f(it->second.how);
    };
    ref("queue put+get+task_done, one by one",
        [](std::string& how) { return reference_queue_cycle(1, how); });
    ref("queue put_many+get_many+task_done(n), 100 a batch",
        [](std::string& how) { return reference_queue_cycle(batch, how); });
    ref("dict set, one by one", [](std::string& how) { return reference_dict("HSET", 1, how); });
    ref("dict get, one by one", [](std::string& how) { return reference_dict("HGET", 1, how); });
    ref("dict update, 100 pairs a call",
        [](std::string& how) { return reference_dict("HSET", batch, how); });
    ref("dict get_many, 100 keys a call",
        [](std::string& how) { return reference_dict("HGET", batch, how); });
    std::printf("\n%-52s %14s %16s %7s\n", "workload (16-byte payloads, one connection)",
                "mpp /s", "redis-benchmark", "ratio");
    for (auto& [row, r] : g_rows) {
      std::printf("%-52s %14.0f %16.0f %7.2f\n", row.c_str(), r.mpp, r.reference,
                  r.reference > 0 ? r.mpp / r.reference : 0.0);
    }
    if (!g_shm.empty()) {
      std::printf("\n%-52s %14s %16s %7s\n", "for scale: mpp shared memory, one process",
                  "mpp shm /s", "mpp redis /s", "shm/rds");
      for (auto& [row, rate] : g_shm) {
        double redis = g_rows.count(row) ? g_rows[row].mpp : 0;
        std::printf("%-52s %14.0f %16.0f %7.0f\n", row.c_str(), rate, redis,
                    redis > 0 ? rate / redis : 0.0);
      }
    }
    std::printf("\nredis-benchmark commands (-c 1 -r %d):\n", keyspace);
    for (auto& [row, r] : g_rows) std::printf("  %s: %s\n", row.c_str(), r.how.c_str());
  } catch (const std::exception& e) {
    std::cerr << "redis_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
