// The comparison suite's harness: a plan of measurements (workload, case, variant), each
// run as a warm-up plus N repetitions whose samples are summarised as median [min, max];
// forked workers talking over pipes; PSS of a set of processes; the Python side.
//
// Nothing here knows a workload. Workloads (scan.cpp, wordcount.cpp, queues.cpp,
// pool.cpp) add Tasks to the Plan; main.cpp runs it, prints the table and writes JSON.
#pragma once

#include <sys/types.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start);

struct Config {
  bool quick = false;      // each workload once, small sizes; only correctness matters
  int reps = 5;            // measured repetitions (after `warmup` unmeasured ones)
  int warmup = 1;
  std::string out_dir = "out";
  std::string python = "/usr/bin/python3";
  std::string python_dir;  // benchmarks/python
  std::string plot_script; // benchmarks/plot.py
  std::vector<std::string> only;  // workload ids to run; empty = all
};

// What one repetition of a variant produced: named figures (all "higher is better" or
// "lower is better" by metric, see Metric) and whether its result was correct.
struct RunOut {
  std::map<std::string, double> figures;
  bool correct = true;
  std::string why;  // what was wrong, when !correct
};

// How a figure is shown. `scale` divides the raw value for display (e.g. 1e-3 for ms).
struct Metric {
  std::string key;   // key in RunOut::figures
  std::string label; // "wall", "PSS", "msgs/s"...
  std::string unit;  // display unit
  double scale = 1;  // shown = raw / scale
  bool higher_is_better = false;
  // Each cell also shows its median divided by that of the first of these variants that
  // has a figure in this case (so every ratio comes from one run), or by ratio_base.
  std::vector<std::string> ratio_to;
  double ratio_base = 0;
  std::string ratio_label;  // what the ratio means, e.g. "× one scan", "× data"
};

struct Summary {
  std::vector<double> samples;
  double median = 0, min = 0, max = 0;
};
Summary summarize(std::vector<double> samples);

enum class Status { ok, not_yet, failed, not_applicable };

struct VariantResult {
  std::string variant;
  Status status = Status::ok;
  std::string note;                        // why not ok
  std::map<std::string, Summary> figures;  // by Metric::key
};

// One row group of the table: a workload at one size / worker count, every variant.
struct Case {
  std::string workload;      // "scan", "wordcount", "queue", "pool"
  std::string name;          // "256 MiB, 2 workers"
  boost::json::object params;
  std::vector<Metric> metrics;
  std::vector<VariantResult> results;
};

// A variant of one case: runs once per call (`once`), or all at once for the Python side
// (`batch`, given warm-up and repetitions, returns every measured run).
struct Task {
  std::size_t case_index;
  std::string variant;
  std::function<RunOut()> once;
  std::function<std::vector<RunOut>(int warmup, int reps)> batch;
  std::string not_yet;  // non-empty: the mpp feature is not there; shown as "n/a (not yet)"
  std::function<void()> setup, teardown;  // around all repetitions, not timed
  // The setup holds memory that must not show in another variant's figures (a PSS): set up
  // and torn down around each of this variant's runs instead of around all of them.
  bool exclusive = false;
};

// The three kinds of task.
Task measured(std::size_t case_index, std::string variant, std::function<RunOut()> once);
Task batched(std::size_t case_index, std::string variant,
             std::function<std::vector<RunOut>(int, int)> batch);
Task not_yet(std::size_t case_index, std::string variant, std::string why);

class Plan {
 public:
  explicit Plan(const Config& config) : config_(config) {}
  const Config& config() const { return config_; }
  std::size_t add_case(Case c);
  void add(Task t) { tasks_.push_back(std::move(t)); }
  // Runs every task with a progress line on stderr; returns false if any result was wrong.
  // The variants of one case run interleaved: all set up, then warm-up rounds, then
  // repetition 1 of every variant, repetition 2, ... (a batched task measures one run per
  // round, its warm-ups with the first); then all torn down.
  bool run();
  const std::vector<Case>& cases() const { return cases_; }
  double elapsed() const { return elapsed_; }

 private:
  Config config_;
  std::vector<Case> cases_;
  std::vector<Task> tasks_;
  double elapsed_ = 0;
};

// The progress line: "[ 7/42 1m03s] scan 1 GiB, 2 workers · mpp · rep 3/5".
void progress(const std::string& line);
void progress_done();

// ---- processes and pipes -------------------------------------------------------------

// Writes/reads exactly n bytes; throws std::runtime_error on EOF or error.
void write_all(int fd, const void* data, std::size_t n);
void read_all(int fd, void* data, std::size_t n);
template <class T>
void write_pod(int fd, const T& v) { write_all(fd, &v, sizeof v); }
template <class T>
T read_pod(int fd) { T v; read_all(fd, &v, sizeof v); return v; }

// A forked worker with a pipe each way. The body gets (from_parent, to_parent) and the
// worker leaves with _exit(0), or _exit(1) after printing an exception.
struct Worker {
  pid_t pid = -1;
  int to_child = -1, from_child = -1;
};
Worker spawn(const std::function<void(int in, int out)>& body, std::size_t pipe_bytes = 0);
// Closes the worker's pipes and waits for it; throws if it did not exit with 0.
void reap(Worker& w);
void reap_all(std::vector<Worker>& ws);

// Proportional set size of a process (from /proc/<pid>/smaps_rollup), in bytes.
std::size_t pss_bytes(pid_t pid);
std::size_t pss_total(const std::vector<pid_t>& pids);

// ---- the Python side -----------------------------------------------------------------

// Runs `python3 <python_dir>/<script> args... --warmup W --reps R` and parses its JSON
// output: {"runs": [{"figures": {...}, "correct": bool, "why": str, "check": str}, ...]}.
// A run's "check" (e.g. a digest of the counts) is passed to `verify`, which may mark it
// wrong.
std::vector<RunOut> run_python(const Config& config, const std::string& script,
                               const std::vector<std::string>& args, int warmup, int reps,
                               const std::function<void(RunOut&, const std::string&)>& verify = {});

// ---- helpers ---------------------------------------------------------------------------

// FNV-1a 64, as benchmarks/python/common.py computes it.
std::uint64_t fnv1a(std::string_view bytes, std::uint64_t h = 0xcbf29ce484222325ull);
std::string hex(std::uint64_t v);
std::string human_bytes(double bytes);  // "256 MiB"
int cpu_count();

}  // namespace bench
