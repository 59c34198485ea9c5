// Workload 4: a pool of worker processes (one per core) running tiny tasks, f(x) = x*x + 1:
// many single tasks through apply_async (each result collected), and map over 1M items
// with Python's default chunking (len / (4 * workers) items per chunk). The pool is made
// before the clock starts; tasks/s counts from the first submission to the last result.
// The sum of all results is checked.
#include <poll.h>
#include <unistd.h>

#include <memory>
#include <stdexcept>
#include <thread>

#include "mpp/pool.hpp"
#include "workloads.hpp"

namespace bench {
namespace {

std::int64_t f(std::int64_t x) { return x * x + 1; }

std::int64_t expected_sum(std::int64_t n) { return (n - 1) * n * (2 * n - 1) / 6 + n; }

std::size_t python_chunksize(std::size_t items, int workers) {
  return (items + std::size_t(workers) * 4 - 1) / (std::size_t(workers) * 4);
}

// Isolated: a pool written with pipes. Each message is a chunk — its first index, its
// length, then the items — and each reply is the index, length and results: inputs and
// outputs travel as copies, as a pool without shared memory must send them.
class PipePool {
 public:
  explicit PipePool(int workers) {
    for (int w = 0; w < workers; ++w) ws_.push_back(spawn(serve, 1 << 20));
  }
  ~PipePool() {
    try {
      for (Worker& w : ws_) write_pod<std::uint64_t>(w.to_child, 0);  // length 0: stop
      reap_all(ws_);
    } catch (...) {
    }
  }
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  // Runs f over items in chunks of `chunk` (1 = one task per item, as apply_async),
  // dealt round-robin; returns the results in input order.
  std::vector<std::int64_t> run(const std::vector<std::int64_t>& items, std::size_t chunk) {
    std::vector<std::int64_t> results(items.size());
    // A writer thread submits while this thread collects, as a pool's task and result
    // handlers do; otherwise full pipes both ways would deadlock.
    std::thread submit([&] {
      std::size_t w = 0;
      for (std::size_t i = 0; i < items.size(); i += chunk, w = (w + 1) % ws_.size()) {
        const std::uint64_t n = std::min(chunk, items.size() - i);
        const std::uint64_t head[2] = {n, i};
        write_all(ws_[w].to_child, head, sizeof head);
        write_all(ws_[w].to_child, items.data() + i, n * sizeof(std::int64_t));
      }
    });
    std::vector<pollfd> fds;
    for (Worker& w : ws_) fds.push_back({w.from_child, POLLIN, 0});
    std::size_t done = 0;
    while (done < items.size()) {
      if (::poll(fds.data(), fds.size(), -1) < 0) continue;
      for (pollfd& p : fds) {
        if (!(p.revents & (POLLIN | POLLHUP))) continue;
        std::uint64_t head[2];
        read_all(p.fd, head, sizeof head);
        if (head[1] + head[0] > results.size()) throw std::runtime_error("bad reply from a worker");
        read_all(p.fd, results.data() + head[1], head[0] * sizeof(std::int64_t));
        done += head[0];
      }
    }
    submit.join();
    return results;
  }

 private:
  static void serve(int in, int out) {
    std::vector<std::int64_t> buf;
    for (;;) {
      std::uint64_t head[2];
      read_all(in, &head[0], sizeof head[0]);
      if (head[0] == 0) return;
      read_all(in, &head[1], sizeof head[1]);
      buf.resize(head[0]);
      read_all(in, buf.data(), head[0] * sizeof(std::int64_t));
      for (auto& x : buf) x = f(x);
      write_all(out, head, sizeof head);
      write_all(out, buf.data(), buf.size() * sizeof(std::int64_t));
    }
  }
  std::vector<Worker> ws_;
};

RunOut checked(std::size_t n, double wall, std::int64_t sum) {
  RunOut out;
  out.figures["wall"] = wall;
  out.figures["tasks"] = double(n) / wall;
  out.correct = sum == expected_sum(std::int64_t(n));
  if (!out.correct)
    out.why = "sum of results " + std::to_string(sum) + ", expected " +
              std::to_string(expected_sum(std::int64_t(n)));
  return out;
}

void add_case(Plan& plan, const char* kind, std::size_t n) {
  const Config& cfg = plan.config();
  const int workers = cpu_count();
  const bool apply = std::string(kind) == "apply";
  Case c;
  c.workload = "pool";
  c.name = apply ? "apply_async × " + std::to_string(n / 1000) + "k"
                 : "map over " + (n >= 1000000 ? std::to_string(n / 1000000) + "M"
                                               : std::to_string(n / 1000) + "k") + " items";
  c.params = {{"kind", kind}, {"tasks", n}, {"workers", workers}};
  c.metrics = {{"tasks", apply ? "tasks" : "items", "/s", 1, true, {kMpp, kIsolated}, 0, ""}};
  const std::size_t ci = plan.add_case(std::move(c));
  const std::size_t chunk = apply ? 1 : python_chunksize(n, workers);

  {
    auto pool = std::make_shared<std::unique_ptr<mpp::Pool>>();
    Task t = measured(ci, kMpp, [=] {
      std::vector<std::int64_t> items(n);
      for (std::size_t i = 0; i < n; ++i) items[i] = std::int64_t(i);
      std::int64_t sum = 0;
      const auto start = Clock::now();
      if (apply) {
        std::vector<mpp::AsyncResult<std::int64_t>> rs;
        rs.reserve(n);
        for (std::int64_t x : items) rs.push_back((*pool)->apply_async(f, x));
        for (auto& r : rs) sum += r.get();
      } else {
        for (std::int64_t r : (*pool)->map(f, items, chunk)) sum += r;
      }
      return checked(n, seconds_since(start), sum);
    });
    t.setup = [=] { *pool = std::make_unique<mpp::Pool>(workers); };
    t.teardown = [=] { pool->reset(); };
    plan.add(std::move(t));
  }

  auto pipe_pool = std::make_shared<std::unique_ptr<PipePool>>();
  Task t = measured(ci, kIsolated, [=] {
    std::vector<std::int64_t> items(n);
    for (std::size_t i = 0; i < n; ++i) items[i] = std::int64_t(i);
    const auto start = Clock::now();
    const auto results = (*pipe_pool)->run(items, chunk);
    const double wall = seconds_since(start);
    std::int64_t sum = 0;
    for (auto r : results) sum += r;
    return checked(n, wall, sum);
  });
  t.setup = [=] { *pipe_pool = std::make_unique<PipePool>(workers); };
  t.teardown = [=] { pipe_pool->reset(); };
  plan.add(std::move(t));

  plan.add(batched(ci, kPython, [=, &cfg](int warmup, int reps) {
    return run_python(cfg, "pool.py",
                      {"--kind", kind, "--count", std::to_string(n), "--workers",
                       std::to_string(workers)},
                      warmup, reps);
  }));
}

}  // namespace

void add_pool(Plan& plan) {
  const bool quick = plan.config().quick;
  add_case(plan, "apply", quick ? 1000 : 20000);
  add_case(plan, "map", quick ? 10000 : 1000000);
}

}  // namespace bench
