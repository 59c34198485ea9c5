// mpp-compare: the comparison suite. Runs every
// workload with mpp shared memory, isolated process memory (copies over pipes), Python's
// multiprocessing and raw Boost.Interprocess in one run; prints a table of medians
// [min–max] and ratios; writes <out>/bench.json, <out>/bench.md and <out>/bench.png.
//
//   mpp-compare [--quick] [--reps N] [--warmup N] [--out DIR] [--only scan,wordcount,...]
//
// --quick runs each workload once at a small size and checks the results (not the
// times); the exit status is non-zero when any result is wrong, so CI runs it.
#include <sys/utsname.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "leftovers.hpp"
#include "workloads.hpp"

#ifndef MPP_BENCH_SOURCE_DIR
#error "MPP_BENCH_SOURCE_DIR must name benchmarks/ (set by benchmarks/CMakeLists.txt)"
#endif

namespace bench {

// The Python module's section (python_module.cpp).
void add_python_module(Plan& plan);

namespace {

struct WorkloadInfo {
  const char* id;
  const char* title;
  void (*add)(Plan&);
};

const WorkloadInfo kWorkloads[] = {
    {"scan",
     "1+5. Read-only dataset of uint64 scanned by N workers (each scans all of it); wall "
     "time from first fork to last answer, PSS of all processes",
     add_scan},
    {"wordcount", "2+5. N workers counting words into one shared dict", add_wordcount},
    {"queue", "3. Producer -> consumer queue, one process each", add_queues},
    {"pool", "4. Pool of 2 workers: tiny tasks", add_pool},
    {"python", "Python: the mpp module vs multiprocessing, measured from Python", add_python_module},
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "mpp-compare: %s\n"
               "usage: mpp-compare [--quick] [--reps N] [--warmup N] [--out DIR] "
               "[--only scan,wordcount,queue,pool,python]\n",
               why);
  std::exit(2);
}

Config parse(int argc, char** argv) {
  Config c;
  c.python_dir = std::string(MPP_BENCH_SOURCE_DIR) + "/python";
  c.plot_script = std::string(MPP_BENCH_SOURCE_DIR) + "/plot.py";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + a).c_str());
      return argv[++i];
    };
    if (a == "--quick") {
      c.quick = true;
    } else if (a == "--reps") {
      c.reps = std::stoi(value());
      if (c.reps < 1) usage("--reps must be at least 1");
    } else if (a == "--warmup") {
      c.warmup = std::stoi(value());
    } else if (a == "--out") {
      c.out_dir = value();
    } else if (a == "--only") {
      std::stringstream ss(value());
      for (std::string w; std::getline(ss, w, ',');) c.only.push_back(w);
    } else if (a == "-h" || a == "--help") {
      usage("the comparison suite of mpp");
    } else {
      usage(("unknown argument " + a).c_str());
    }
  }
  return c;
}

// ---- formatting ------------------------------------------------------------------------

std::string num(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (a >= 1e9)
    std::snprintf(buf, sizeof buf, "%.3gG", v / 1e9);
  else if (a >= 1e6)
    std::snprintf(buf, sizeof buf, "%.3gM", v / 1e6);
  else if (a >= 1e4)
    std::snprintf(buf, sizeof buf, "%.3gk", v / 1e3);
  else if (a >= 100)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

std::string ratio_text(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, r >= 10 ? "%.0f×" : r >= 0.1 ? "%.2f×" : "%.3f×", r);
  return buf;
}

const char* status_text(Status s) {
  switch (s) {
    case Status::ok: return "ok";
    case Status::not_yet: return "not yet";
    case Status::failed: return "failed";
    case Status::not_applicable: return "n/a";
  }
  return "?";
}

// The median of `key` divided by its reference (see Metric::ratio_to), if there is one.
std::optional<double> ratio(const Case& c, const Metric& m, const VariantResult& r) {
  auto it = r.figures.find(m.key);
  if (r.status != Status::ok || it == r.figures.end()) return std::nullopt;
  if (m.ratio_base > 0) return it->second.median / m.ratio_base;
  for (const std::string& ref : m.ratio_to) {
    for (const VariantResult& o : c.results) {
      if (o.variant != ref || o.status != Status::ok) continue;
      auto jt = o.figures.find(m.key);
      if (jt != o.figures.end() && jt->second.median > 0) return it->second.median / jt->second.median;
    }
  }
  return std::nullopt;
}

std::string ratio_note(const Case& c, const Metric& m) {
  if (m.ratio_base > 0) return m.ratio_label;
  for (const std::string& ref : m.ratio_to)
    for (const VariantResult& o : c.results)
      if (o.variant == ref && o.status == Status::ok) return "× " + ref;
  return "";
}

std::string cell(const Case& c, const Metric& m, const VariantResult& r, bool with_range) {
  if (r.status == Status::not_yet) return kNotYet;
  if (r.status == Status::failed) return "FAILED";
  if (r.status == Status::not_applicable) return "n/a";
  auto it = r.figures.find(m.key);
  if (it == r.figures.end()) return "-";
  const Summary& s = it->second;
  std::string t = num(s.median / m.scale);
  if (with_range && s.samples.size() > 1) {
    // Appended piecewise: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string&&.
    t += " [";
    t += num(s.min / m.scale);
    t += "–";
    t += num(s.max / m.scale);
    t += "]";
  }
  if (auto q = ratio(c, m, r)) {
    t += ' ';
    t += ratio_text(*q);
  }
  return t;
}

std::size_t width(const std::string& s) {  // display width: count UTF-8 lead bytes
  std::size_t w = 0;
  for (unsigned char ch : s) w += (ch & 0xC0) != 0x80;
  return w;
}

std::string pad(const std::string& s, std::size_t w) {
  const std::size_t have = width(s);
  return have >= w ? s : s + std::string(w - have, ' ');
}

std::string metric_head(const Case& c, const Metric& m) {
  std::string h = m.label + " (" + m.unit + ")";
  const std::string note = ratio_note(c, m);
  if (!note.empty()) h += ", ratio " + note;
  return h;
}

void print_table(const Plan& plan, std::ostream& os) {
  for (const WorkloadInfo& w : kWorkloads) {
    bool any = false;
    for (const Case& c : plan.cases()) any |= c.workload == w.id;
    if (!any) continue;
    os << "\n== " << w.title << "\n";
    for (const Case& c : plan.cases()) {
      if (c.workload != w.id) continue;
      std::vector<std::vector<std::string>> rows;
      std::vector<std::string> head{c.name, "variant"};
      for (const Metric& m : c.metrics) head.push_back(metric_head(c, m));
      rows.push_back(head);
      for (const VariantResult& r : c.results) {
        std::vector<std::string> row{"", r.variant};
        for (const Metric& m : c.metrics) row.push_back(cell(c, m, r, true));
        if (r.status == Status::failed) row.push_back(r.note);
        rows.push_back(row);
      }
      std::vector<std::size_t> widths;
      for (const auto& row : rows)
        for (std::size_t i = 0; i < row.size(); ++i) {
          if (widths.size() <= i) widths.push_back(0);
          widths[i] = std::max(widths[i], width(row[i]));
        }
      for (const auto& row : rows) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); ++i) line += pad(row[i], widths[i] + 2);
        while (!line.empty() && line.back() == ' ') line.pop_back();
        os << line << "\n";
      }
      os << "\n";
    }
  }
}

void write_markdown(const Plan& plan, const boost::json::object& machine, std::ostream& os) {
  os << "Machine: " << machine.at("cpu").as_string().c_str() << ", "
     << machine.at("cores").as_int64() << " cores, "
     << human_bytes(double(machine.at("memory_bytes").as_int64())) << " RAM, Linux "
     << machine.at("kernel").as_string().c_str() << ", " << machine.at("python").as_string().c_str()
     << "; load average " << machine.at("load_average").as_double() << " at the start, "
     << machine.at("load_average_end").as_double() << " at the end; "
     << machine.at("date").as_string().c_str() << ". Each cell: median [min–max] of "
     << plan.config().reps << " runs after " << plan.config().warmup
     << " warm-up, then the ratio to the reference named in the column.\n";
  for (const WorkloadInfo& w : kWorkloads) {
    bool first = true;
    for (const Case& c : plan.cases()) {
      if (c.workload != w.id) continue;
      if (first) os << "\n**" << w.title << "**\n\n";
      if (first || c.metrics.size() != 0) {
        os << "| case | variant |";
        for (const Metric& m : c.metrics) os << " " << metric_head(c, m) << " |";
        os << "\n|---|---|";
        for (std::size_t i = 0; i < c.metrics.size(); ++i) os << "---|";
        os << "\n";
      }
      first = false;
      bool name_shown = false;
      for (const VariantResult& r : c.results) {
        os << "| " << (name_shown ? "" : c.name) << " | " << r.variant << " |";
        name_shown = true;
        for (const Metric& m : c.metrics) os << " " << cell(c, m, r, true) << " |";
        os << "\n";
      }
      os << "\n";
    }
  }
}

// ---- JSON ------------------------------------------------------------------------------

std::string read_first_line(const std::string& path, const std::string& prefix) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
  return "";
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == ':' || s[i] == '\t')) ++i;
  return s.substr(i);
}

// The 1-minute load average: on a machine shared with other work, it says how far the
// figures are from an idle machine's.
double load_average() {
  double l = 0;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = 0;
    std::fclose(f);
  }
  return l;
}

boost::json::object machine_info(const Config& config) {
  boost::json::object m;
  m["cpu"] = trim(read_first_line("/proc/cpuinfo", "model name"));
  m["cores"] = cpu_count();
  const std::string mem = trim(read_first_line("/proc/meminfo", "MemTotal:"));
  m["memory_bytes"] = std::int64_t(std::atoll(mem.c_str())) * 1024;
  utsname u{};
  uname(&u);
  m["kernel"] = u.release;
  std::string py;
  if (FILE* f = popen((config.python + " --version 2>&1").c_str(), "r")) {
    char buf[128];
    while (std::fgets(buf, sizeof buf, f)) py += buf;
    pclose(f);
  }
  m["python"] = trim(py);
  m["thp_shmem"] = trim(read_first_line("/sys/kernel/mm/transparent_hugepage/shmem_enabled", ""));
  m["load_average"] = load_average();
  char date[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  m["date"] = date;
  return m;
}

boost::json::object to_json(const Plan& plan, const boost::json::object& machine, bool ok) {
  boost::json::object doc;
  doc["machine"] = machine;
  const Config& cfg = plan.config();
  doc["config"] = {{"quick", cfg.quick}, {"reps", cfg.quick ? 1 : cfg.reps},
                   {"warmup", cfg.quick ? 0 : cfg.warmup}};
  doc["elapsed_s"] = plan.elapsed();
  doc["all_correct"] = ok;
  boost::json::array cases;
  for (const Case& c : plan.cases()) {
    boost::json::object jc;
    jc["workload"] = c.workload;
    jc["name"] = c.name;
    jc["params"] = c.params;
    boost::json::array metrics;
    for (const Metric& m : c.metrics)
      metrics.push_back({{"key", m.key}, {"label", m.label}, {"unit", m.unit}, {"scale", m.scale},
                         {"higher_is_better", m.higher_is_better},
                         {"ratio_to", ratio_note(c, m)}});
    jc["metrics"] = std::move(metrics);
    boost::json::array results;
    for (const VariantResult& r : c.results) {
      boost::json::object jr;
      jr["variant"] = r.variant;
      jr["status"] = status_text(r.status);
      if (!r.note.empty()) jr["note"] = r.note;
      boost::json::object figs;
      for (const auto& [k, s] : r.figures) {
        boost::json::array samples;
        for (double v : s.samples) samples.push_back(v);
        figs[k] = {{"median", s.median}, {"min", s.min}, {"max", s.max}, {"samples", samples}};
      }
      jr["figures"] = std::move(figs);
      boost::json::object ratios;
      for (const Metric& m : c.metrics)
        if (auto q = ratio(c, m, r)) ratios[m.key] = *q;
      jr["ratios"] = std::move(ratios);
      results.push_back(std::move(jr));
    }
    jc["results"] = std::move(results);
    cases.push_back(std::move(jc));
  }
  doc["cases"] = std::move(cases);
  return doc;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  using namespace bench;
  const Config cfg = parse(argc, argv);
  remove_stale_bench_files();
  remove_bench_files_on_signal();
  Plan plan(cfg);
  for (const WorkloadInfo& w : kWorkloads) {
    if (!cfg.only.empty() && std::find(cfg.only.begin(), cfg.only.end(), w.id) == cfg.only.end())
      continue;
    w.add(plan);
  }
  boost::json::object machine = machine_info(cfg);
  std::printf("mpp-compare%s: %s; this machine has %d cores (%s)\n", cfg.quick ? " --quick" : "",
              cfg.quick ? "each workload once at a small size, checking results"
                        : ("median [min–max] of " + std::to_string(cfg.reps) + " runs after " +
                           std::to_string(cfg.warmup) + " warm-up").c_str(),
              cpu_count(), machine.at("cpu").as_string().c_str());
  std::fflush(stdout);
  const bool ok = plan.run();
  machine["load_average_end"] = load_average();

  print_table(plan, std::cout);
  std::printf("suite time: %.0f s; load average %.1f at the start, %.1f at the end (%d cores); "
              "all results %s\n",
              plan.elapsed(), machine.at("load_average").as_double(),
              machine.at("load_average_end").as_double(), cpu_count(),
              ok ? "correct" : "NOT correct (see FAILED above)");

  std::filesystem::create_directories(cfg.out_dir);
  const std::string json_path = cfg.out_dir + "/bench.json";
  const std::string md_path = cfg.out_dir + "/bench.md";
  const std::string png_path = cfg.out_dir + "/bench.png";
  {
    std::ofstream f(json_path);
    f << boost::json::serialize(to_json(plan, machine, ok)) << "\n";
  }
  {
    std::ofstream f(md_path);
    write_markdown(plan, machine, f);
  }
  const std::string plot = cfg.python + " " + cfg.plot_script + " " + json_path + " " + png_path;
  const int plot_status = std::system(plot.c_str());
  std::printf("wrote %s, %s%s\n", json_path.c_str(), md_path.c_str(),
              plot_status == 0 ? (", " + png_path).c_str() : " (the plot FAILED)");
  return ok && plot_status == 0 ? 0 : 1;
}
