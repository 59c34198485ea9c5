#include "harness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace bench {

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Summary summarize(std::vector<double> samples) {
  Summary s;
  s.samples = samples;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  const std::size_t n = samples.size();
  s.median = n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
  s.min = samples.front();
  s.max = samples.back();
  return s;
}

// ---- progress --------------------------------------------------------------------------

namespace {
bool stderr_is_tty() {
  static const bool tty = isatty(STDERR_FILENO) != 0;
  return tty;
}
bool progress_open = false;
}  // namespace

void progress(const std::string& line) {
  if (stderr_is_tty()) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    progress_open = true;
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void progress_done() {
  if (progress_open) std::fprintf(stderr, "\r\033[K");
  progress_open = false;
  std::fflush(stderr);
}

// ---- the plan --------------------------------------------------------------------------

Task measured(std::size_t case_index, std::string variant, std::function<RunOut()> once) {
  Task t;
  t.case_index = case_index;
  t.variant = std::move(variant);
  t.once = std::move(once);
  return t;
}

Task batched(std::size_t case_index, std::string variant,
             std::function<std::vector<RunOut>(int, int)> batch) {
  Task t;
  t.case_index = case_index;
  t.variant = std::move(variant);
  t.batch = std::move(batch);
  return t;
}

Task not_yet(std::size_t case_index, std::string variant, std::string why) {
  Task t;
  t.case_index = case_index;
  t.variant = std::move(variant);
  t.not_yet = std::move(why);
  return t;
}

std::size_t Plan::add_case(Case c) {
  cases_.push_back(std::move(c));
  return cases_.size() - 1;
}

namespace {
std::string clock_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  return buf;
}
}  // namespace

bool Plan::run() {
  const auto start = Clock::now();
  const int warmup = config_.quick ? 0 : config_.warmup;
  const int reps = config_.quick ? 1 : config_.reps;
  bool all_correct = true;
  // One slot per task, filled in task order; each case's variants then run interleaved.
  std::vector<VariantResult> results(tasks_.size());
  std::vector<std::vector<RunOut>> runs(tasks_.size());
  std::vector<bool> live(tasks_.size(), false);
  std::vector<bool> done_case(cases_.size(), false);
  auto head = [&](std::size_t i) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "[%2zu/%zu %s] ", i + 1, tasks_.size(), clock_text(seconds_since(start)).c_str());
    const Case& c = cases_[tasks_[i].case_index];
    return buf + c.workload + " " + c.name + " · " + tasks_[i].variant;
  };
  auto fail = [&](std::size_t i, const std::string& note) {
    if (results[i].status != Status::ok) return;
    results[i].status = Status::failed;
    results[i].note = note;
    live[i] = false;
    if (tasks_[i].teardown) {
      try {
        tasks_[i].teardown();
      } catch (...) {
      }
    }
  };
  for (std::size_t first = 0; first < tasks_.size(); ++first) {
    const std::size_t ci = tasks_[first].case_index;
    if (done_case[ci]) continue;
    done_case[ci] = true;
    std::vector<std::size_t> group;  // the case's tasks, in the order they were added
    for (std::size_t i = first; i < tasks_.size(); ++i)
      if (tasks_[i].case_index == ci) group.push_back(i);
    for (std::size_t i : group) {
      Task& t = tasks_[i];
      results[i].variant = t.variant;
      if (!t.not_yet.empty()) {
        results[i].status = Status::not_yet;
        results[i].note = t.not_yet;
        continue;
      }
      live[i] = true;
      if (!t.setup || t.exclusive) continue;
      progress(head(i) + " · setting up");
      try {
        t.setup();
      } catch (const std::exception& e) {
        live[i] = false;
        results[i].status = Status::failed;
        results[i].note = e.what();
      }
    }
    // Warm-ups, then repetition 1 of every variant, then repetition 2, ...: drift on a shared
    // machine (load, frequency, page cache) hits every variant alike.
    for (int k = 0; k < warmup + reps; ++k) {
      const std::string what = k < warmup ? " · warm-up"
                                          : " · rep " + std::to_string(k - warmup + 1) + "/" + std::to_string(reps);
      for (std::size_t i : group) {
        if (!live[i]) continue;
        Task& t = tasks_[i];
        if (t.batch && k < warmup) continue;  // its warm-ups run with its first round
        progress(head(i) + what);
        try {
          if (t.exclusive && t.setup) t.setup();
          if (t.batch) {
            // The Python side measures in its own process: one measured run per round.
            for (RunOut& out : t.batch(k == warmup ? warmup : 0, 1)) runs[i].push_back(std::move(out));
          } else {
            RunOut out = t.once();
            if (k >= warmup || !out.correct) runs[i].push_back(std::move(out));
          }
          if (t.exclusive && t.teardown) t.teardown();
        } catch (const std::exception& e) {
          fail(i, e.what());
        }
      }
    }
    for (std::size_t i : group) {
      if (live[i] && tasks_[i].teardown && !tasks_[i].exclusive) {
        try {
          tasks_[i].teardown();
        } catch (const std::exception& e) {
          fail(i, e.what());
        }
      }
      VariantResult& r = results[i];
      for (const RunOut& out : runs[i]) {
        if (!out.correct && r.status == Status::ok) {
          r.status = Status::failed;
          r.note = "wrong result: " + out.why;
        }
      }
      if (r.status == Status::ok) {
        std::map<std::string, std::vector<double>> samples;
        for (const RunOut& out : runs[i])
          for (const auto& [key, v] : out.figures) samples[key].push_back(v);
        for (auto& [key, v] : samples) r.figures[key] = summarize(std::move(v));
      } else if (r.status == Status::failed) {
        all_correct = false;
        progress_done();
        const Case& c = cases_[ci];
        std::fprintf(stderr, "FAILED: %s %s · %s: %s\n", c.workload.c_str(), c.name.c_str(), tasks_[i].variant.c_str(),
                     r.note.c_str());
      }
      cases_[ci].results.push_back(std::move(r));
    }
  }
  progress_done();
  elapsed_ = seconds_since(start);
  return all_correct;
}

// ---- processes and pipes ---------------------------------------------------------------

void write_all(int fd, const void* data, std::size_t n) {
  auto* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t k = ::write(fd, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("write to pipe: ") + std::strerror(errno));
    }
    p += k;
    n -= std::size_t(k);
  }
}

void read_all(int fd, void* data, std::size_t n) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t k = ::read(fd, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("read from pipe: ") + std::strerror(errno));
    }
    if (k == 0) throw std::runtime_error("read from pipe: unexpected end of file");
    p += k;
    n -= std::size_t(k);
  }
}

Worker spawn(const std::function<void(int, int)>& body, std::size_t pipe_bytes) {
  int down[2], up[2];
  if (pipe2(down, O_CLOEXEC) != 0 || pipe2(up, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  if (pipe_bytes) {
    // Bigger pipes mean fewer wake-ups per megabyte: the fairest pipe we can give the
    // isolated variant. The limit is /proc/sys/fs/pipe-max-size; a refusal is harmless.
    fcntl(down[1], F_SETPIPE_SZ, int(pipe_bytes));
    fcntl(up[1], F_SETPIPE_SZ, int(pipe_bytes));
  }
  std::fflush(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(3);
    ::close(down[1]);
    ::close(up[0]);
    int code = 0;
    try {
      body(down[0], up[1]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "worker %d: %s\n", int(getpid()), e.what());
      code = 1;
    } catch (...) {
      code = 1;
    }
    std::fflush(nullptr);
    _exit(code);
  }
  ::close(down[0]);
  ::close(up[1]);
  return Worker{pid, down[1], up[0]};
}

void reap(Worker& w) {
  if (w.to_child >= 0) ::close(w.to_child);
  if (w.from_child >= 0) ::close(w.from_child);
  w.to_child = w.from_child = -1;
  if (w.pid <= 0) return;
  int status = 0;
  while (waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
  }
  const pid_t pid = w.pid;
  w.pid = -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("worker " + std::to_string(pid) + " failed (status " +
                             std::to_string(status) + ")");
}

void reap_all(std::vector<Worker>& ws) {
  std::string error;
  for (Worker& w : ws) {
    try {
      reap(w);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  ws.clear();
  if (!error.empty()) throw std::runtime_error(error);
}

std::size_t pss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  if (!in) throw std::runtime_error("cannot read /proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string key;
  std::size_t kb = 0;
  while (in >> key) {
    if (key == "Pss:") {
      in >> kb;
      return kb * 1024;
    }
    in.ignore(1 << 20, '\n');
  }
  throw std::runtime_error("no Pss line in /proc/" + std::to_string(pid) + "/smaps_rollup");
}

std::size_t pss_total(const std::vector<pid_t>& pids) {
  std::size_t total = 0;
  for (pid_t p : pids) total += pss_bytes(p);
  return total;
}

// ---- Python ----------------------------------------------------------------------------

namespace {
std::string capture_stdout(const std::vector<std::string>& argv) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(out[1], STDOUT_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  ::close(out[1]);
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t k = ::read(out[0], buf, sizeof buf);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    text.append(buf, std::size_t(k));
  }
  ::close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error(argv[1] + " failed (status " + std::to_string(status) + ")");
  return text;
}
}  // namespace

std::vector<RunOut> run_python(const Config& config, const std::string& script,
                               const std::vector<std::string>& args, int warmup, int reps,
                               const std::function<void(RunOut&, const std::string&)>& verify) {
  std::vector<std::string> argv{config.python, config.python_dir + "/" + script};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--warmup", std::to_string(warmup), "--reps", std::to_string(reps)});
  const std::string text = capture_stdout(argv);
  boost::json::value doc;
  try {
    doc = boost::json::parse(text);
  } catch (const std::exception& e) {
    throw std::runtime_error(script + " printed no JSON: " + e.what());
  }
  std::vector<RunOut> runs;
  for (const auto& r : doc.at("runs").as_array()) {
    RunOut out;
    for (const auto& [k, v] : r.at("figures").as_object()) out.figures[k] = v.to_number<double>();
    out.correct = r.at("correct").as_bool();
    if (auto* why = r.as_object().if_contains("why")) out.why = why->as_string().c_str();
    std::string check;
    if (auto* c = r.as_object().if_contains("check")) check = c->as_string().c_str();
    if (verify) verify(out, check);
    runs.push_back(std::move(out));
  }
  if (int(runs.size()) != reps)
    throw std::runtime_error(script + " returned " + std::to_string(runs.size()) + " runs, not " +
                             std::to_string(reps));
  return runs;
}

// ---- helpers ---------------------------------------------------------------------------

std::uint64_t fnv1a(std::string_view bytes, std::uint64_t h) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string hex(std::uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  if (bytes == double(static_cast<long long>(bytes)))
    std::snprintf(buf, sizeof buf, "%lld %s", static_cast<long long>(bytes), units[u]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", bytes, units[u]);
  return buf;
}

int cpu_count() { return int(std::thread::hardware_concurrency()); }

}  // namespace bench
