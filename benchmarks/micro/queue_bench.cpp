// Queue and Pipe between processes, against Python's mp.Queue and
// mp.Pipe, Boost.Interprocess message_queue, a raw socketpair (blocking, and spinning then
// blocking as mpp's Pipe does), a raw futex ping-pong and a two-process copy through shared
// memory (the ceiling for the byte rows), all in one run. Every figure is the median of --benchmark_repetitions runs (default 5);
// each run forks its own processes and reports its own figure as a counter:
//   msgs_s  messages per second (64 B), MB_s  megabytes per second (4 KiB, 1 MiB),
//   rtt_us  round trip in microseconds (one message each way).
// After the table, a summary prints the ratios that have targets.
//
//   build/benchmarks/micro/queue_bench                 # everything, 5 repetitions
//   build/benchmarks/micro/queue_bench --benchmark_filter=mpp   # only mpp's own rows
#include <benchmark/benchmark.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "../compare/shm_ring.hpp"
#include "mpp/detail/spin.hpp"
#include "mpp/pipe.hpp"
#include "mpp/queue.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Msg64 {
  std::uint64_t seq;
  char pad[56];
};
static_assert(sizeof(Msg64) == 64);

// Shared control block for one run: a start flag and per-process end times.
struct Control {
  std::atomic<int> go{0};
  std::atomic<int> ready{0};
  std::atomic<std::uint32_t> a{0}, b{0};  // raw futex ping-pong words
  std::atomic<long> errors{0};
};

template <class T>
T* shared_new() {
  void* p = mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("mmap");
  return new (p) T();
}
template <class T>
void shared_delete(T* p) {
  p->~T();
  munmap(p, sizeof(T));
}

// Forks `body`; the child leaves with _exit.
pid_t spawn(const std::function<void()>& body) {
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    try {
      body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      _exit(1);
    }
    _exit(0);
  }
  return pid;
}
void reap(const std::vector<pid_t>& pids) {
  for (pid_t p : pids) waitpid(p, nullptr, 0);
}

void wait_go(Control& c) {
  c.ready.fetch_add(1);
  while (c.go.load(std::memory_order_acquire) == 0) sched_yield();
}
// Waits until `n` children are ready, then starts them; returns the start time.
Clock::time_point start_all(Control& c, int n) {
  while (c.ready.load() < n) sched_yield();
  auto t0 = Clock::now();
  c.go.store(1, std::memory_order_release);
  return t0;
}

// ---------------------------------------------------------------- channels ----------
// Each has: send(const Msg&), recv() -> Msg, made before fork.

struct MppQueue64 {
  mpp::Queue<Msg64> q;
  void send(const Msg64& m) { q.put(m); }
  Msg64 recv() { return q.get(); }
};

struct BoostMq64 {
  std::string name = "mpp-bench-mq-" + std::to_string(getpid());
  std::unique_ptr<boost::interprocess::message_queue> q;
  BoostMq64() {
    boost::interprocess::message_queue::remove(name.c_str());
    q = std::make_unique<boost::interprocess::message_queue>(boost::interprocess::create_only,
                                                            name.c_str(), 4096, sizeof(Msg64));
  }
  ~BoostMq64() { boost::interprocess::message_queue::remove(name.c_str()); }
  void send(const Msg64& m) { q->send(&m, sizeof m, 0); }
  Msg64 recv() {
    Msg64 m;
    std::size_t got;
    unsigned prio;
    q->receive(&m, sizeof m, got, prio);
    return m;
  }
};

// ------------------------------------------------------------- throughput 64 B ------

// `producers` processes each send `per_producer` messages; `consumers` processes receive
// them all (each consumer stops at its share). Sequence numbers per producer are checked
// to increase (FIFO per producer).
template <class Channel>
void throughput64(benchmark::State& state, int producers, int consumers) {
  const long total = state.range(0);
  for (auto _ : state) {
    auto* c = shared_new<Control>();
    {
      Channel ch;
      const long per_producer = total / producers;
      const long per_consumer = per_producer * producers / consumers;
      std::vector<pid_t> kids;
      for (int p = 0; p < producers; ++p) {
        kids.push_back(spawn([&, p] {
          wait_go(*c);
          Msg64 m{};
          for (long i = 0; i < per_producer; ++i) {
            m.seq = static_cast<std::uint64_t>(p) << 48 | static_cast<std::uint64_t>(i);
            ch.send(m);
          }
        }));
      }
      // Receives this consumer's share, checking FIFO order per producer.
      auto consume = [&] {
        std::vector<std::int64_t> last(static_cast<std::size_t>(producers), -1);
        for (long i = 0; i < per_consumer; ++i) {
          Msg64 m = ch.recv();
          auto p = static_cast<std::size_t>(m.seq >> 48);
          auto s = static_cast<std::int64_t>(m.seq & 0xffffffffffff);
          if (p >= last.size() || s <= last[p]) c->errors.fetch_add(1);
          else last[p] = s;
        }
      };
      for (int k = 1; k < consumers; ++k) {
        kids.push_back(spawn([&] {
          wait_go(*c);
          consume();
        }));
      }
      // The parent is the first consumer.
      auto t0 = start_all(*c, static_cast<int>(kids.size()));
      consume();
      reap(kids);  // the other consumers finish at about the same time
      double t = seconds_since(t0);
      state.SetIterationTime(t);
      state.counters["msgs_s"] = static_cast<double>(per_producer * producers) / t;
    }
    if (c->errors.load() != 0) state.SkipWithError("messages out of order or lost");
    shared_delete(c);
  }
}

void BM_mpp_queue_64B_1to1(benchmark::State& s) { throughput64<MppQueue64>(s, 1, 1); }
void BM_mpp_queue_64B_2to2(benchmark::State& s) { throughput64<MppQueue64>(s, 2, 2); }
void BM_boost_mq_64B_1to1(benchmark::State& s) { throughput64<BoostMq64>(s, 1, 1); }
void BM_boost_mq_64B_2to2(benchmark::State& s) { throughput64<BoostMq64>(s, 2, 2); }

// ------------------------------------------------------------- throughput bytes -----

// Arg 2: 0 gets each message as a std::string (a copy out), 1 reads it in place with
// get_view (zero-copy: one memcpy per message in all, the producer's).
void BM_mpp_queue_bytes(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const long count = state.range(1);
  const bool view = state.range(2) != 0;
  for (auto _ : state) {
    auto* c = shared_new<Control>();
    {
      mpp::Queue<std::string> q(0, std::max<std::size_t>(128u << 20, size * 16));
      pid_t kid = spawn([&] {
        wait_go(*c);
        std::string m(size, 'x');
        for (long i = 0; i < count; ++i) {
          std::memcpy(m.data(), &i, sizeof i);
          q.put(m);
        }
      });
      auto t0 = start_all(*c, 1);
      auto check = [&](std::string_view m, long i) {
        long seq;
        std::memcpy(&seq, m.data(), sizeof seq);
        if (m.size() != size || seq != i || m.back() != 'x') c->errors.fetch_add(1);
      };
      for (long i = 0; i < count; ++i) {
        if (view) {
          q.get_view([&](std::string_view m) { check(m, i); });
        } else {
          std::string m = q.get();
          check(m, i);
        }
      }
      double t = seconds_since(t0);
      reap({kid});
      state.SetIterationTime(t);
      state.counters["MB_s"] = static_cast<double>(size) * static_cast<double>(count) / t / 1e6;
    }
    if (c->errors.load() != 0) state.SkipWithError("torn or reordered messages");
    shared_delete(c);
  }
}

// The ceiling for a copy-in, copy-out queue between processes: a producer process copies
// each message into a shared ring, the consumer process copies it out (shm_ring.hpp).
// Unlike a one-thread memcpy, the bytes really travel between two cores' caches.
void BM_shm_copy(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const long count = state.range(1);
  for (auto _ : state) {
    auto* c = shared_new<Control>();
    {
      bench::ShmRing ring(size);
      pid_t kid = spawn([&] {
        wait_go(*c);
        std::string msg(size, 'x');
        for (long i = 0; i < count; ++i) {
          std::memcpy(msg.data(), &i, sizeof i);
          ring.send(msg.data(), size);
        }
      });
      std::string out(size, '\0');
      auto t0 = start_all(*c, 1);
      for (long i = 0; i < count; ++i) {
        long seq;
        if (ring.recv(out.data()) != size) c->errors.fetch_add(1);
        std::memcpy(&seq, out.data(), sizeof seq);
        if (seq != i) c->errors.fetch_add(1);
      }
      double t = seconds_since(t0);
      reap({kid});
      state.SetIterationTime(t);
      state.counters["MB_s"] = static_cast<double>(size) * static_cast<double>(count) / t / 1e6;
    }
    if (c->errors.load() != 0) state.SkipWithError("torn or reordered messages");
    shared_delete(c);
  }
}

// ------------------------------------------------------------- round trips ----------

// A ping-pong of `rounds` messages; with `gap_us` > 0 the pinger waits that long between
// rounds (not timed), so that a peer that spins briefly has gone to sleep when the ping
// comes: the "sleeping peer" round trip.
template <class Ping, class Pong>
void round_trip(benchmark::State& state, Ping&& ping_fn, Pong&& pong_fn, long rounds, int gap_us) {
  auto* c = shared_new<Control>();
  pid_t kid = spawn([&] {
    wait_go(*c);
    for (long i = 0; i < rounds + 1; ++i) pong_fn();
  });
  start_all(*c, 1);
  ping_fn();  // the first round waits for the child to be scheduled: not timed
  double total = 0;
  for (long i = 0; i < rounds; ++i) {
    if (gap_us > 0) {
      auto until = Clock::now() + std::chrono::microseconds(gap_us);
      while (Clock::now() < until) {
      }
    }
    auto t0 = Clock::now();
    ping_fn();
    total += seconds_since(t0);
  }
  reap({kid});
  state.SetIterationTime(total);
  state.counters["rtt_us"] = total / static_cast<double>(rounds) * 1e6;
  shared_delete(c);
}

template <class Channel>
void rtt_channel(benchmark::State& state) {
  for (auto _ : state) {
    Channel there, back;
    Msg64 m{};
    round_trip(
        state,
        [&] {
          there.send(m);
          m = back.recv();
          ++m.seq;
        },
        [&] { back.send(there.recv()); }, state.range(0), static_cast<int>(state.range(1)));
  }
}
void BM_mpp_queue_rtt(benchmark::State& s) { rtt_channel<MppQueue64>(s); }
void BM_boost_mq_rtt(benchmark::State& s) { rtt_channel<BoostMq64>(s); }

void BM_mpp_pipe_rtt(benchmark::State& state) {
  for (auto _ : state) {
    auto [a, b] = mpp::Pipe<Msg64>();
    Msg64 m{};
    round_trip(
        state,
        [&] {
          a.send(m);
          m = a.recv();
        },
        [&] { b.send(b.recv()); }, state.range(0), 0);
  }
}

// Arg 1: 0 blocks in read; 1 first polls for up to mpp's adaptive spin budget, then blocks,
// as mpp's Pipe does (like with like).
void BM_raw_socketpair_rtt(benchmark::State& state) {
  const bool spin = state.range(1) != 0;
  for (auto _ : state) {
    int fd[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fd) != 0) throw std::runtime_error("socketpair");
    Msg64 m{};
    std::uint32_t budget[2] = {mpp::detail::kSpinMinNs, mpp::detail::kSpinMinNs};
    auto xfer = [&](int f, Msg64& x, bool out) {
      if (!out && spin) {
        mpp::detail::spin_until(
            [&] {
              pollfd p{f, POLLIN, 0};
              return ::poll(&p, 1, 0) > 0;
            },
            budget[f == fd[0] ? 0 : 1]);
      }
      auto* p = reinterpret_cast<char*>(&x);
      std::size_t done = 0;
      while (done < sizeof x) {
        ssize_t n = out ? ::write(f, p + done, sizeof x - done) : ::read(f, p + done, sizeof x - done);
        if (n <= 0) throw std::runtime_error("socketpair io");
        done += static_cast<std::size_t>(n);
      }
    };
    round_trip(
        state,
        [&] {
          xfer(fd[0], m, true);
          xfer(fd[0], m, false);
        },
        [&] {
          Msg64 x;
          xfer(fd[1], x, false);
          xfer(fd[1], x, true);
        },
        state.range(0), 0);
    ::close(fd[0]);
    ::close(fd[1]);
  }
}

// Raw futex ping-pong: each side sleeps on its word until the other bumps it (no spin).
long futex(std::atomic<std::uint32_t>& w, int op, std::uint32_t v) {
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&w), op, v, nullptr, nullptr, 0);
}
void BM_raw_futex_rtt(benchmark::State& state) {
  for (auto _ : state) {
    auto* ctl = shared_new<Control>();
    Control& c = *ctl;
    std::uint32_t seq = 0, pong_seq = 0;
    auto wait_change = [](std::atomic<std::uint32_t>& w, std::uint32_t old) {
      while (w.load(std::memory_order_acquire) == old) futex(w, FUTEX_WAIT, old);
    };
    round_trip(
        state,
        [&] {
          c.a.store(++seq, std::memory_order_release);
          futex(c.a, FUTEX_WAKE, 1);
          wait_change(c.b, seq - 1);
        },
        [&] {
          wait_change(c.a, pong_seq);
          ++pong_seq;
          c.b.store(pong_seq, std::memory_order_release);
          futex(c.b, FUTEX_WAKE, 1);
        },
        state.range(0), static_cast<int>(state.range(1)));
    shared_delete(ctl);
  }
}

// ------------------------------------------------------------- Python ---------------

// Runs benchmarks/python/queues.py (multiprocessing, fork context) once and returns the
// named figure of its one measured run.
double run_python(const std::string& args, const std::string& figure) {
  // __FILE__ is this file's full path (CMake passes absolute source paths).
  static const std::string script =
      (std::filesystem::path(__FILE__).parent_path().parent_path() / "python" / "queues.py").string();
  std::string cmd = "/usr/bin/python3 " + script + " --warmup 1 --reps 1 " + args;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) throw std::runtime_error("popen python3");
  std::string out;
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  if (pclose(f) != 0) throw std::runtime_error("python3 failed: " + cmd);
  if (out.find("\"correct\": true") == std::string::npos) throw std::runtime_error("python run incorrect: " + out);
  auto at = out.find("\"" + figure + "\": ");
  if (at == std::string::npos) throw std::runtime_error("no figure " + figure + " in " + out);
  return std::stod(out.substr(at + figure.size() + 4));
}

void BM_python_mp_queue_64B_1to1(benchmark::State& state) {
  for (auto _ : state) {
    double msgs = run_python("--kind throughput --bytes 64 --count " + std::to_string(state.range(0)) + " --via queue", "msgs");
    state.SetIterationTime(static_cast<double>(state.range(0)) / msgs);
    state.counters["msgs_s"] = msgs;
  }
}
void BM_python_mp_queue_rtt(benchmark::State& state) {
  for (auto _ : state) {
    double rtt = run_python("--kind latency --bytes 64 --count " + std::to_string(state.range(0)) + " --via queue", "rtt");
    state.SetIterationTime(rtt * static_cast<double>(state.range(0)));
    state.counters["rtt_us"] = rtt * 1e6;
  }
}
void BM_python_mp_pipe_rtt(benchmark::State& state) {
  for (auto _ : state) {
    double rtt = run_python("--kind latency --bytes 64 --count " + std::to_string(state.range(0)) + " --via pipe", "rtt");
    state.SetIterationTime(rtt * static_cast<double>(state.range(0)));
    state.counters["rtt_us"] = rtt * 1e6;
  }
}

void configure(benchmark::internal::Benchmark* b) {
  b->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_mpp_queue_64B_1to1)->Arg(4'000'000)->Apply(configure);
BENCHMARK(BM_boost_mq_64B_1to1)->Arg(2'000'000)->Apply(configure);
BENCHMARK(BM_python_mp_queue_64B_1to1)->Arg(200'000)->Apply(configure);
BENCHMARK(BM_mpp_queue_64B_2to2)->Arg(4'000'000)->Apply(configure);
BENCHMARK(BM_boost_mq_64B_2to2)->Arg(2'000'000)->Apply(configure);
BENCHMARK(BM_mpp_queue_bytes)
    ->Args({4096, 200'000, 0})
    ->Args({1 << 20, 2'000, 0})
    ->Args({1 << 20, 2'000, 1})
    ->Apply(configure);
BENCHMARK(BM_shm_copy)->Args({4096, 200'000})->Args({1 << 20, 2'000})->Apply(configure);
// Round trips: {rounds, gap in us between rounds (0: back to back, "busy")}.
BENCHMARK(BM_mpp_queue_rtt)->Args({100'000, 0})->Args({2'000, 1000})->Apply(configure);
BENCHMARK(BM_raw_futex_rtt)->Args({20'000, 0})->Args({2'000, 1000})->Apply(configure);
BENCHMARK(BM_boost_mq_rtt)->Args({20'000, 0})->Apply(configure);
BENCHMARK(BM_python_mp_queue_rtt)->Arg(5'000)->Apply(configure);
BENCHMARK(BM_mpp_pipe_rtt)->Arg(20'000)->Apply(configure);
BENCHMARK(BM_raw_socketpair_rtt)->Args({20'000, 0})->Args({20'000, 1})->Apply(configure);
BENCHMARK(BM_python_mp_pipe_rtt)->Arg(5'000)->Apply(configure);

// Collects the median of each counter, for the summary.
class Collector : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> median;
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name == "median") {
        for (const auto& [k, v] : r.counters) median[r.run_name.function_name + "/" + r.run_name.args + " " + k] = v.value;
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

void summary(const std::map<std::string, double>& m) {
  auto get = [&](const std::string& k) {
    auto it = m.find(k);
    return it == m.end() ? 0.0 : it->second;
  };
  auto line = [](const char* what, double v, const char* target, bool ok) {
    std::printf("  %-58s %10.2f   target %-14s %s\n", what, v, target, ok ? "met" : "NOT met");
  };
  std::printf("\nSummary (medians):\n");
  double q = get("BM_mpp_queue_64B_1to1/4000000 msgs_s");
  double py = get("BM_python_mp_queue_64B_1to1/200000 msgs_s");
  double mq = get("BM_boost_mq_64B_1to1/2000000 msgs_s");
  double q22 = get("BM_mpp_queue_64B_2to2/4000000 msgs_s");
  double mq22 = get("BM_boost_mq_64B_2to2/2000000 msgs_s");
  if (q > 0 && py > 0) line("64 B 1->1: mpp Queue / Python mp.Queue (x)", q / py, ">= 40", q / py >= 40);
  if (q > 0 && mq > 0) line("64 B 1->1: mpp Queue / Boost message_queue (x)", q / mq, ">= 2", q / mq >= 2);
  if (q22 > 0 && mq22 > 0) line("64 B 2->2: mpp Queue / Boost message_queue (x)", q22 / mq22, ">= 2", q22 / mq22 >= 2);
  double busy = get("BM_mpp_queue_rtt/100000/0 rtt_us");
  if (busy > 0) line("busy round trip, mpp Queue (us)", busy, "<= 2", busy <= 2);
  double slp = get("BM_mpp_queue_rtt/2000/1000 rtt_us");
  double fx = get("BM_raw_futex_rtt/2000/1000 rtt_us");
  if (slp > 0 && fx > 0) line("sleeping-peer round trip: mpp Queue / raw futex (x)", slp / fx, "<= 1.2", slp / fx <= 1.2);
  double pp = get("BM_mpp_pipe_rtt/20000 rtt_us");
  double sp = get("BM_raw_socketpair_rtt/20000/1 rtt_us");
  double sb = get("BM_raw_socketpair_rtt/20000/0 rtt_us");
  // Like with like: mpp's Pipe spins, then blocks; so does the raw socketpair it is divided by.
  if (pp > 0 && sp > 0)
    line("round trip: mpp Pipe / raw socketpair, both spin then block (x)", pp / sp, "<= 1.2", pp / sp <= 1.2);
  if (pp > 0 && sb > 0) std::printf("  %-58s %10.2f\n", "round trip: mpp Pipe / raw socketpair that blocks (x)", pp / sb);
  double mb = get("BM_mpp_queue_bytes/1048576/2000/0 MB_s");
  double mv = get("BM_mpp_queue_bytes/1048576/2000/1 MB_s");
  double mc = get("BM_shm_copy/1048576/2000 MB_s");
  if (mb > 0 && mc > 0)
    line("1 MiB: mpp Queue MB/s / 2-process shm copy MB/s", mb / mc, ">= 0.40", mb / mc >= 0.4);
  if (mv > 0 && mc > 0)
    line("1 MiB, get_view (zero-copy): MB/s / 2-process shm copy", mv / mc, ">= 0.40", mv / mc >= 0.4);
}

}  // namespace

int main(int argc, char** argv) {
  // Medians of 5 unless told otherwise.
  std::vector<char*> args(argv, argv + argc);
  std::string reps = "--benchmark_repetitions=5";
  bool has_reps = false;
  for (int i = 1; i < argc; ++i) has_reps |= std::strncmp(argv[i], "--benchmark_repetitions", 23) == 0;
  if (!has_reps) args.push_back(reps.data());
  std::string agg = "--benchmark_report_aggregates_only=true";
  args.push_back(agg.data());
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  Collector reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  summary(reporter.median);
  benchmark::Shutdown();
}
