// Load on one manager server: CLIENTS threads, each with its own proxy connection, make
// REQUESTS calls each on one shared queue (put, then get, alternately), against
//   mpp_server     mpp::net::BaseManager (start(): a forked server process)
//   python_server  Python's own manager server (benchmarks/python/net_server.py, /usr/bin/python3)
// with the same C++ client code, in the same run; and, for reference, Python clients
// (CLIENTS processes) against the Python server. Every request must be answered and every
// item put must come back exactly once ("lost" counts the ones that did not); the figures
// are requests/s over the whole run, per-request latency percentiles, and the CPU time per
// request (user + system) of the server process (from /proc) and of the clients (this
// process, getrusage): on 2 cores, requests/s can never exceed 2 / (server + client CPU
// per request), whatever the server does, so the client's share bounds any speed-up.
//
//   net_bench [--clients 8] [--requests 10000] [Google Benchmark flags]
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "mpp/net/manager.hpp"

namespace {

int g_clients = 8;
int g_requests = 10000;
const std::string kAuthkey = "bench";
std::map<std::string, double> g_rate;

// CPU time (user + system) the process `pid` has used so far, in microseconds.
double cpu_us(pid_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return 0;
  char buf[1024];
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');  // fields after the command name
  unsigned long utime = 0, stime = 0;
  if (p) std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime);
  return static_cast<double>(utime + stime) * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU time (user + system) of this process — the load clients — so far, in microseconds.
double self_cpu_us() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto us = [](const timeval& t) { return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec); };
  return us(u.ru_utime) + us(u.ru_stime);
}

std::string python_script() {
  return (std::filesystem::path(__FILE__).parent_path().parent_path() / "python" / "net_server.py").string();
}

struct Load {
  double seconds = 0;
  std::size_t answered = 0;
  std::int64_t lost = 0;
  std::vector<double> latency_us;
  double client_cpu_us = 0;
};

Load run_load(std::uint16_t port) {
  Load out;
  double cpu0 = 0;
  std::vector<std::vector<double>> lat(static_cast<std::size_t>(g_clients));
  std::vector<std::int64_t> put_sum(lat.size()), got_sum(lat.size());
  std::vector<std::size_t> answered(lat.size());
  std::barrier start(g_clients + 1);
  std::barrier finish(g_clients + 1);
  std::vector<std::thread> threads;
  for (int c = 0; c < g_clients; ++c) {
    threads.emplace_back([&, c] {
      auto i = static_cast<std::size_t>(c);
      mpp::net::BaseManager m({"127.0.0.1", port}, kAuthkey);
      auto q = m.queue<std::int64_t>("get_queue");
      q.qsize();  // opens this proxy's connection before the clock starts
      lat[i].reserve(static_cast<std::size_t>(g_requests));
      start.arrive_and_wait();
      for (int r = 0; r < g_requests; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        try {
          if (r % 2 == 0) {
            std::int64_t v = c * 1000000LL + r;
            q.put(v);
            put_sum[i] += v;
          } else {
            got_sum[i] += q.get(std::chrono::seconds(30));
          }
          ++answered[i];
        } catch (const std::exception& e) {
          std::fprintf(stderr, "client %d request %d: %s\n", c, r, e.what());
        }
        lat[i].push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      }
      finish.arrive_and_wait();
    });
  }
  start.arrive_and_wait();
  auto t0 = std::chrono::steady_clock::now();
  cpu0 = self_cpu_us();
  finish.arrive_and_wait();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.client_cpu_us = self_cpu_us() - cpu0;
  for (auto& t : threads) t.join();
  std::int64_t puts = 0, gets = 0;
  for (std::size_t i = 0; i < lat.size(); ++i) {
    out.answered += answered[i];
    puts += put_sum[i];
    gets += got_sum[i];
    out.latency_us.insert(out.latency_us.end(), lat[i].begin(), lat[i].end());
  }
  out.lost = static_cast<std::int64_t>(static_cast<std::size_t>(g_clients) * static_cast<std::size_t>(g_requests) -
                                       out.answered) +
             (puts != gets ? 1 : 0);
  std::sort(out.latency_us.begin(), out.latency_us.end());
  return out;
}

void report(benchmark::State& state, const std::string& name, const Load& l, double server_cpu_us) {
  auto n = static_cast<double>(std::max<std::size_t>(l.answered, 1));
  state.counters["server_cpu_us_per_req"] = server_cpu_us / n;
  state.counters["client_cpu_us_per_req"] = l.client_cpu_us / n;
  state.SetIterationTime(l.seconds);
  double rate = static_cast<double>(l.answered) / l.seconds;
  g_rate[name] = rate;
  state.counters["req_per_s"] = rate;
  state.counters["p50_us"] = l.latency_us.empty() ? 0 : l.latency_us[l.latency_us.size() / 2];
  state.counters["p99_us"] = l.latency_us.empty() ? 0 : l.latency_us[l.latency_us.size() * 99 / 100];
  state.counters["lost"] = static_cast<double>(l.lost);
  if (l.lost != 0) state.SkipWithError("requests were lost or items did not come back");
}

// Python's manager server in a child process; its port is read from its first line.
struct PythonServer {
  pid_t pid = -1;
  std::uint16_t port = 0;
  PythonServer() {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid = fork();
    if (pid == 0) {
      dup2(fds[1], 1);
      close(fds[0]);
      close(fds[1]);
      std::string script = python_script();
      execl("/usr/bin/python3", "python3", "-u", script.c_str(), "--authkey", kAuthkey.c_str(), nullptr);
      _exit(127);
    }
    close(fds[1]);
    std::string line;
    char ch;
    while (read(fds[0], &ch, 1) == 1 && ch != '\n') line += ch;
    close(fds[0]);
    if (line.rfind("listening on ", 0) == 0) port = static_cast<std::uint16_t>(std::stoi(line.substr(13)));
  }
  ~PythonServer() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

void BM_mpp_server(benchmark::State& state) {
  mpp::net::BaseManager server({"127.0.0.1", 0}, kAuthkey);
  server.register_("get_queue", std::make_shared<mpp::net::LocalQueue>());
  server.start();
  for (auto _ : state) {
    double cpu0 = cpu_us(server.server_pid());
    Load l = run_load(server.address().port);
    report(state, "mpp_server", l, cpu_us(server.server_pid()) - cpu0);
  }
  server.shutdown();
}

void BM_python_server(benchmark::State& state) {
  PythonServer py;
  if (py.port == 0) {
    state.SkipWithError("could not start /usr/bin/python3 benchmarks/python/net_server.py");
    for (auto _ : state) {
    }
    return;
  }
  for (auto _ : state) {
    double cpu0 = cpu_us(py.pid);
    Load l = run_load(py.port);
    report(state, "python_server", l, cpu_us(py.pid) - cpu0);
  }
}

// Python clients (processes) against the Python server: Python on both sides, for scale.
void BM_python_clients_python_server(benchmark::State& state) {
  PythonServer py;
  for (auto _ : state) {
    std::string cmd = "/usr/bin/python3 " + python_script() + " --authkey " + kAuthkey + " --port " +
                      std::to_string(py.port) + " --load " + std::to_string(g_clients) + " " +
                      std::to_string(g_requests);
    FILE* f = py.port ? popen(cmd.c_str(), "r") : nullptr;
    std::string json;
    char buf[512];
    while (f && fgets(buf, sizeof buf, f)) json += buf;
    if (f) pclose(f);
    auto num = [&](const char* key) {
      auto at = json.find(std::string("\"") + key + "\": ");
      return at == std::string::npos ? -1.0 : std::strtod(json.c_str() + at + std::strlen(key) + 4, nullptr);
    };
    if (num("req_per_s") <= 0) {
      state.SkipWithError("the Python load clients failed");
      continue;
    }
    state.SetIterationTime(num("seconds"));
    state.counters["req_per_s"] = num("req_per_s");
    state.counters["p50_us"] = num("p50_us");
    state.counters["p99_us"] = num("p99_us");
    state.counters["lost"] = static_cast<double>(g_clients) * g_requests - num("requests");
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--clients") && i + 1 < argc) g_clients = std::stoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--requests") && i + 1 < argc) g_requests = std::stoi(argv[++i]);
    else rest.push_back(argv[i]);
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  // Fork the mpp server before any thread exists (the load clients are threads).
  benchmark::RegisterBenchmark("net_load/mpp_server", BM_mpp_server)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("net_load/python_server", BM_python_server)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("net_load/python_clients_python_server", BM_python_clients_python_server)
      ->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (g_rate.count("mpp_server") && g_rate.count("python_server"))
    std::printf("net_load: %d clients x %d requests: mpp server %.0f req/s, Python server %.0f req/s: %.1fx\n",
                g_clients, g_requests, g_rate["mpp_server"], g_rate["python_server"],
                g_rate["mpp_server"] / g_rate["python_server"]);
}
