// The Python section of the suite: the mpp Python module against Python's multiprocessing,
// measured from Python by benchmarks/python/mpp_module_bench.py (dict get/set against
// multiprocessing.Manager().dict(), a 64 B bytes queue against multiprocessing.Queue, and a
// C++ producer -> Python consumer queue against the pure-Python pair). The module and the
// C++ producer are found in the build tree this program belongs to.

#include <filesystem>
#include <string>
#include <vector>

#include "workloads.hpp"

namespace bench {
namespace {

constexpr const char* kModule = "mpp (Python module)";
constexpr const char* kCppToPython = "mpp, C++ producer";

// build/benchmarks/mpp-compare -> build
std::string build_dir() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path().string();
}

bool module_built(const std::string& build) {
  for (const auto& e : std::filesystem::directory_iterator(build + "/python/mpp", std::filesystem::directory_options::skip_permission_denied)) {
    if (e.path().filename().string().rfind("_mpp.", 0) == 0) return true;
  }
  return false;
}

void add_variant(Plan& plan, std::size_t ci, const char* variant, const std::string& which,
                 const std::vector<std::string>& size_args, bool available) {
  if (!available) {
    plan.add(not_yet(ci, variant, "the mpp Python module is not built (MPP_BUILD_PYTHON, pybind11-dev)"));
    return;
  }
  std::vector<std::string> args{"--variant", which, "--build", build_dir()};
  args.insert(args.end(), size_args.begin(), size_args.end());
  const Config& cfg = plan.config();
  plan.add(batched(ci, variant, [args, &cfg](int warmup, int reps) {
    return run_python(cfg, "mpp_module_bench.py", args, warmup, reps);
  }));
}

}  // namespace

void add_python_module(Plan& plan) {
  std::error_code ec;
  const bool built = std::filesystem::exists(build_dir() + "/python/mpp", ec) && module_built(build_dir()) &&
                     std::filesystem::exists(build_dir() + "/python/tests/mpp-python-peer", ec);
  const std::string count = plan.config().quick ? "2000" : "200000";
  const std::vector<Metric> ops{{"rate", "ops", "/s", 1, true, {kPython}, 0, ""}};
  const std::vector<Metric> msgs{{"rate", "msgs", "/s", 1, true, {kPython}, 0, ""}};
  {
    Case c;
    c.workload = "python";
    c.name = "dict get/set";
    c.params = {{"ops", 2 * std::stoi(count)}};
    c.metrics = ops;
    std::size_t ci = plan.add_case(std::move(c));
    add_variant(plan, ci, kModule, "mpp-dict", {"--count", count}, built);
    add_variant(plan, ci, kPython, "mp-dict", {"--count", count}, built);
  }
  for (bool cpp : {false, true}) {
    Case c;
    c.workload = "python";
    c.name = cpp ? "64 B queue, C++ → Python" : "64 B queue";
    c.params = {{"bytes", 64}, {"messages", std::stoi(count)}};
    c.metrics = msgs;
    std::size_t ci = plan.add_case(std::move(c));
    const std::vector<std::string> sizes{"--count", count, "--bytes", "64"};
    add_variant(plan, ci, cpp ? kCppToPython : kModule, cpp ? "cpp-mpp-queue" : "mpp-queue", sizes, built);
    add_variant(plan, ci, kPython, "mp-queue", sizes, built);
  }
}

}  // namespace bench
