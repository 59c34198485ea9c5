// Workload 1 (and 5): a large read-only dataset of uint64 scanned by N workers. Every
// worker needs all of it (each computes the sum of the whole array), so zero copy shows as
// a total PSS of about 1x the data and isolation as about (N+1)x (N workers + the parent's
// copy). Wall time runs from the first fork to the last worker's answer: fork, page
// faults and copies included. The limit is one process scanning data it already has.
#include <sys/mman.h>
#include <unistd.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>

#include "mpp/array.hpp"
#include "workloads.hpp"

namespace bench {
namespace {

constexpr std::uint64_t kMul = 0x9E3779B97F4A7C15ull;

// data[i] = i * kMul (mod 2^64), whose sum has a closed form every variant is checked
// against (benchmarks/python/scan.py uses the same).
void fill(std::uint64_t* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) p[i] = i * kMul;
}

std::uint64_t expected_sum(std::size_t n) {
  const std::uint64_t pairs = n % 2 == 0 ? (n / 2) * (n - 1) : n * ((n - 1) / 2);
  return pairs * kMul;  // both products wrap mod 2^64, as the workers' sums do
}

// Four independent sums so the loop is bound by memory, not by one add chain.
__attribute__((noinline)) std::uint64_t scan(const std::uint64_t* p, std::size_t n) {
  std::uint64_t a = 0, b = 0, c = 0, d = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a += p[i];
    b += p[i + 1];
    c += p[i + 2];
    d += p[i + 3];
  }
  for (; i < n; ++i) a += p[i];
  return a + b + c + d;
}

// Private memory for a copy of the data, on transparent huge pages where the kernel gives
// them (THP "madvise" mode): the fairest start for the isolated variant.
struct PrivateBuffer {
  std::uint64_t* p = nullptr;
  std::size_t bytes = 0;
  explicit PrivateBuffer(std::size_t b) : bytes(b) {
    void* m = mmap(nullptr, b, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::runtime_error("mmap of a private buffer failed");
    madvise(m, b, MADV_HUGEPAGE);
    p = static_cast<std::uint64_t*>(m);
  }
  ~PrivateBuffer() { munmap(p, bytes); }
  PrivateBuffer(const PrivateBuffer&) = delete;
  PrivateBuffer& operator=(const PrivateBuffer&) = delete;
};

// Gives the task a private copy of the data for the duration of its runs (made in setup,
// freed in teardown, so it never counts in another variant's PSS).
std::shared_ptr<std::unique_ptr<PrivateBuffer>> with_private_data(Task& t, std::size_t bytes) {
  auto buf = std::make_shared<std::unique_ptr<PrivateBuffer>>();
  t.setup = [=] {
    *buf = std::make_unique<PrivateBuffer>(bytes);
    fill((*buf)->p, bytes / sizeof(std::uint64_t));
  };
  t.teardown = [=] { buf->reset(); };
  t.exclusive = true;
  return buf;
}

// Forks `workers` processes running `body(in, out)`, which must answer with its sum and
// then wait for one byte; measures the time to the last answer and the PSS of all
// processes while the workers still hold the data.
RunOut run_workers(int workers, std::size_t n,
                   const std::function<void(int in, int out)>& body,
                   const std::function<void(std::vector<Worker>&)>& feed = {}) {
  const auto start = Clock::now();
  std::vector<Worker> ws;
  for (int w = 0; w < workers; ++w) ws.push_back(spawn(body, feed ? (1 << 20) : 0));
  if (feed) feed(ws);
  RunOut out;
  const std::uint64_t want = expected_sum(n);
  for (Worker& w : ws) {
    const auto got = read_pod<std::uint64_t>(w.from_child);
    if (got != want) {
      out.correct = false;
      out.why = "a worker's sum is " + hex(got) + ", expected " + hex(want);
    }
  }
  out.figures["wall"] = seconds_since(start);
  std::vector<pid_t> pids{getpid()};
  for (const Worker& w : ws) pids.push_back(w.pid);
  out.figures["pss"] = double(pss_total(pids));
  for (Worker& w : ws) write_pod(w.to_child, char(1));
  reap_all(ws);
  return out;
}

// The body of a worker that scans memory it inherited or mapped itself.
void answer_and_wait(int in, int out, const std::uint64_t* p, std::size_t n) {
  write_pod(out, scan(p, n));
  read_pod<char>(in);
}

void add_case(Plan& plan, std::size_t bytes, int workers) {
  const Config& cfg = plan.config();
  const std::size_t n = bytes / sizeof(std::uint64_t);
  Case c;
  c.workload = "scan";
  c.name = human_bytes(double(bytes)) + ", " + std::to_string(workers) +
           (workers == 1 ? " worker" : " workers");
  c.params = {{"bytes", bytes}, {"workers", workers}};
  c.metrics = {
      {"wall", "wall", "ms", 1e-3, false, {kOneProcess}, 0, "× one scan"},
      {"pss", "PSS", "MiB", 1024.0 * 1024.0, false, {}, double(bytes), "× data"},
  };
  const std::size_t ci = plan.add_case(std::move(c));

  // The limit: one process scanning data it already holds, once.
  {
    Task t = measured(ci, kOneProcess, {});
    auto buf = with_private_data(t, bytes);
    t.once = [=] {
      RunOut out;
      const auto start = Clock::now();
      const std::uint64_t s = scan((*buf)->p, n);
      out.figures["wall"] = seconds_since(start);
      out.figures["pss"] = double(pss_bytes(getpid()));
      out.correct = s == expected_sum(n);
      if (!out.correct) out.why = "sum " + hex(s);
      return out;
    };
    plan.add(std::move(t));
  }

  // mpp: an Array<uint64_t> (anonymous shared memory) made before fork; each worker scans
  // its span in place, no copy and no lock.
  {
    auto array = std::make_shared<std::unique_ptr<mpp::Array<std::uint64_t>>>();
    Task t = measured(ci, kMpp, {});
    t.setup = [=] {
      *array = std::make_unique<mpp::Array<std::uint64_t>>(n);
      fill((*array)->span().data(), n);
    };
    t.teardown = [=] { array->reset(); };
    t.exclusive = true;
    t.once = [=] {
      const std::span<std::uint64_t> data = (*array)->span();
      return run_workers(workers, n, [=](int in, int out) {
        answer_and_wait(in, out, data.data(), n);
      });
    };
    plan.add(std::move(t));
  }

  // Fork-inherited: the data in the parent's private memory, on transparent huge pages
  // where the kernel gives them, read by workers forked after it was built (what any
  // mpp::Process sees of its parent's memory). Zero copy while nobody writes, and fork
  // copies one page-table entry per 2 MiB huge page where shared memory (4 KiB shmem pages
  // when shmem THP is off) makes every worker fault each page in. Read-only: a worker's
  // write would be private to it, and nothing made after the fork is seen.
  {
    Task t = measured(ci, kInherited, {});
    auto buf = with_private_data(t, bytes);
    t.once = [=] {
      const std::uint64_t* p = (*buf)->p;
      return run_workers(workers, n, [=](int in, int out) { answer_and_wait(in, out, p, n); });
    };
    plan.add(std::move(t));
  }

  // Isolated: each worker gets its own copy of the data through a pipe.
  {
    Task t = measured(ci, kIsolated, {});
    auto buf = with_private_data(t, bytes);
    t.once = [=] {
      auto body = [=](int in, int out) {
        PrivateBuffer mine(bytes);
        read_all(in, mine.p, bytes);
        answer_and_wait(in, out, mine.p, n);
      };
      // One writer thread per worker (started after the forks), as a parent feeding
      // several children at once would.
      auto feed = [=](std::vector<Worker>& ws) {
        std::vector<std::thread> writers;
        for (Worker& w : ws)
          writers.emplace_back([fd = w.to_child, p = (*buf)->p, bytes] { write_all(fd, p, bytes); });
        for (auto& th : writers) th.join();
      };
      return run_workers(workers, n, body, feed);
    };
    plan.add(std::move(t));
  }

  // Python: multiprocessing.shared_memory + numpy, workers forked (scan.py).
  plan.add(batched(ci, kPython, [=, &cfg](int warmup, int reps) {
                  return run_python(cfg, "scan.py",
                                    {"--bytes", std::to_string(bytes), "--workers",
                                     std::to_string(workers)},
                                    warmup, reps);
                }));

  // Raw Boost.Interprocess: a shared_memory_object each worker opens by name and maps
  // read-only, as an unrelated process would.
  {
    namespace bip = boost::interprocess;
    const std::string name = "mpp-bench-" + std::to_string(getpid()) + "-scan";
    auto region = std::make_shared<std::unique_ptr<bip::mapped_region>>();
    Task t = measured(ci, kBoost, {});
    t.setup = [=] {
      bip::shared_memory_object::remove(name.c_str());
      bip::shared_memory_object shm(bip::create_only, name.c_str(), bip::read_write);
      shm.truncate(bip::offset_t(bytes));
      *region = std::make_unique<bip::mapped_region>(shm, bip::read_write);
      fill(static_cast<std::uint64_t*>((*region)->get_address()), n);
    };
    t.teardown = [=] {
      region->reset();
      bip::shared_memory_object::remove(name.c_str());
    };
    t.exclusive = true;
    t.once = [=] {
      return run_workers(workers, n, [=](int in, int out) {
        bip::shared_memory_object shm(bip::open_only, name.c_str(), bip::read_only);
        bip::mapped_region r(shm, bip::read_only);
        answer_and_wait(in, out, static_cast<const std::uint64_t*>(r.get_address()), n);
      });
    };
    plan.add(std::move(t));
  }
}

}  // namespace

void add_scan(Plan& plan) {
  if (plan.config().quick) {
    add_case(plan, std::size_t(8) << 20, 2);
    return;
  }
  for (int workers : {1, 2, 4, 8}) add_case(plan, std::size_t(256) << 20, workers);
  add_case(plan, std::size_t(1) << 30, 2);
}

}  // namespace bench
