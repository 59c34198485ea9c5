// mpp-inspect: tells the truth about mpp segments in /dev/shm — what is in them, how full
// they are, who holds their locks (and whether that process is still alive), and whether
// their structures are sound. It maps segments read-only and takes no lock, so it never
// blocks on a held lock and never changes a segment (except `gc` and `rm`, which remove).
//
// Exit codes: 0 success (check: sound); 1 check found problems, or gc/rm failed to remove;
// 2 usage error; 3 no such segment/object; 4 the file is not a usable mpp segment.
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "dump.hpp"
#include "procfs.hpp"
#include "segment_reader.hpp"

namespace json = boost::json;
using namespace mpp::inspect;

namespace {

constexpr int kOk = 0, kFindings = 1, kUsage = 2;

const char* kHelp = R"(mpp-inspect: look inside mpp shared-memory segments (in /dev/shm)

usage: mpp-inspect COMMAND [ARGS] [--json]

commands:
  list                      every mpp segment: size, used, free, objects, creator (alive?),
                            age, and how many live processes map it
  show SEG                  each object of SEG: kind, types, elements, bytes, lock state
                            (free, or held by pid N alive/DEAD), recoveries, leaked bytes
  dump SEG OBJ [--limit N]  the contents of object OBJ (default limit 20 entries)
  check SEG                 heap and structure invariants: exit 0 when sound, 1 with findings
  watch SEG [--interval S]  a live view refreshed in place (default every 1 s) until q or Ctrl-C
                            (--count N stops after N refreshes)
  gc [PREFIX] [--dry-run] [--include-persisted]
                            remove segments (whose names start with PREFIX, if given) whose
                            creator is dead and that no live process maps; persisted
                            segments are kept unless --include-persisted
  rm SEG [--force]          remove SEG (refuses while live processes map it, unless --force)

every command takes --json (machine-readable output) and --help.
SEG is a name in /dev/shm, memfd:INODE for an anonymous segment (a default Manager's, a
standalone queue's: list shows them, found through the processes that use them), or a path
to a segment file.

exit codes: 0 ok (check: sound), 1 check found problems or gc/rm could not remove,
            2 usage error, 3 no such segment or object, 4 not a usable mpp segment
)";

struct Args {
  std::string command;
  std::vector<std::string> positional;
  bool json = false, help = false, dry_run = false, force = false, include_persisted = false;
  std::size_t limit = 20;
  double interval = 1.0;
  std::optional<long> count;
};

[[noreturn]] void usage_error(const std::string& msg) {
  std::cerr << "mpp-inspect: " << msg << "\n(try mpp-inspect --help)\n";
  std::exit(kUsage);
}

double parse_number(const std::string& flag, const std::string& v) {
  try {
    std::size_t used = 0;
    double d = std::stod(v, &used);
    if (used != v.size() || !(d > 0) || !std::isfinite(d)) throw std::invalid_argument(v);
    return d;
  } catch (const std::exception&) {
    usage_error(flag + " needs a positive number, not '" + v + "'");
  }
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto value = [&](const std::string& flag) -> std::string {
      if (i + 1 >= argc) usage_error(flag + " needs a value");
      return argv[++i];
    };
    if (s == "--json") a.json = true;
    else if (s == "--help" || s == "-h") a.help = true;
    else if (s == "--dry-run") a.dry_run = true;
    else if (s == "--force") a.force = true;
    else if (s == "--include-persisted") a.include_persisted = true;
    else if (s == "--limit") a.limit = static_cast<std::size_t>(parse_number(s, value(s)));
    else if (s == "--interval") a.interval = parse_number(s, value(s));
    else if (s == "--count") a.count = static_cast<long>(parse_number(s, value(s)));
    else if (s.rfind("--", 0) == 0) usage_error("unknown option " + s);
    else if (a.command.empty()) a.command = s;
    else a.positional.push_back(s);
  }
  return a;
}

std::string human_bytes(std::uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

std::string human_age(double created) {
  double age = static_cast<double>(std::time(nullptr)) - created;
  if (age < 0) age = 0;
  char buf[32];
  if (age < 120) std::snprintf(buf, sizeof buf, "%.0fs", age);
  else if (age < 7200) std::snprintf(buf, sizeof buf, "%.0fm", age / 60);
  else if (age < 172800) std::snprintf(buf, sizeof buf, "%.1fh", age / 3600);
  else std::snprintf(buf, sizeof buf, "%.1fd", age / 86400);
  return buf;
}

std::string lock_text(const LockInfo& l) {
  if (l.holder == 0) return "free";
  return "held by pid " + std::to_string(l.holder) + " (" + process_name(l.holder) + ", " +
         (l.holder_alive ? "alive" : "DEAD: the next locker recovers it") + ")";
}

json::object lock_json(const LockInfo& l) {
  json::object o;
  o["state"] = l.holder == 0 ? "free" : "held";
  if (l.holder != 0) {
    o["holder_pid"] = l.holder;
    o["holder_alive"] = l.holder_alive;
  }
  o["recoveries"] = l.recoveries;
  return o;
}

json::object object_json(const ObjectInfo& o) {
  json::object j;
  j["name"] = o.name;
  if (!o.problem.empty()) {
    j["problem"] = o.problem;
    return j;
  }
  j["kind"] = o.kind;
  j["key_type"] = o.key_type;
  j["value_type"] = o.value_type;
  j["count"] = o.count;
  j["bytes"] = o.bytes;
  j["leaked"] = o.leaked;
  j["offset"] = o.offset;
  j["creator_pid"] = o.creator_pid;
  j["created"] = o.created;
  j["lock"] = lock_json(o.lock);
  if (o.get_lock) j["get_lock"] = lock_json(*o.get_lock);
  return j;
}

json::object segment_json(const SegmentInfo& s, bool with_objects) {
  json::object j;
  j["name"] = s.name;
  j["size"] = s.size;
  j["max_size"] = s.max_size;
  j["growths"] = s.growths;
  j["heap_size"] = s.heap_size;
  j["used"] = s.used;
  j["free"] = s.free;
  j["objects"] = s.objects.size();
  j["creator_pid"] = s.creator_pid;
  j["creator_alive"] = s.creator_alive;
  j["created"] = s.created;
  j["age_seconds"] = static_cast<double>(std::time(nullptr)) - s.created;
  j["persist"] = s.persist;
  j["read_only"] = s.read_only;
  if (s.read_only) j["read_only_reason"] = s.read_only_reason;
  j["heap_recoveries"] = s.heap_recoveries;
  j["leaked"] = s.leaked;
  j["heap_lock"] = lock_json(s.heap_lock);
  j["directory_lock"] = lock_json(s.directory_lock);
  json::array mappers;
  for (pid_t p : s.mapped_by) mappers.push_back(p);
  j["mapped_by"] = std::move(mappers);
  if (with_objects) {
    json::array objs;
    for (const auto& o : s.objects) objs.push_back(object_json(o));
    j["object_list"] = std::move(objs);
  }
  json::array f;
  for (const auto& x : s.findings) f.push_back(json::value(x));
  j["findings"] = std::move(f);
  return j;
}

void print_json(const json::value& v) { std::cout << json::serialize(v) << "\n"; }

int cmd_list(const Args& a) {
  std::vector<SegmentInfo> segs;
  json::array skipped;
  for (const auto& name : shm_files()) {
    try {
      MappedSegment m(name);
      segs.push_back(read_segment(m, false));
    } catch (const InspectError& e) {
      // Not an mpp segment (or not readable): list shows mpp segments only.
      skipped.push_back(json::value(name));
    }
  }
  // Anonymous segments (memfds, in no directory), found through the processes using them.
  for (const auto& anon : memfd_segments()) {
    try {
      MappedSegment m(anon.name);
      segs.push_back(read_segment(m, false));
    } catch (const InspectError& e) {
      skipped.push_back(json::value(anon.name + " (" + e.what() + ")"));
    }
  }
  if (a.json) {
    json::object out;
    json::array arr;
    for (const auto& s : segs) arr.push_back(segment_json(s, false));
    out["segments"] = std::move(arr);
    out["other_files"] = std::move(skipped);
    print_json(out);
    return kOk;
  }
  std::printf("%-28s %10s %10s %10s %7s %-22s %6s %6s\n", "SEGMENT", "SIZE", "USED", "FREE",
              "OBJECTS", "CREATOR", "AGE", "MAPPED");
  for (const auto& s : segs) {
    std::string creator = std::to_string(s.creator_pid) + (s.creator_alive ? " (alive)" : " (dead)");
    std::printf("%-28s %10s %10s %10s %7zu %-22s %6s %6zu%s\n", s.name.c_str(),
                human_bytes(s.size).c_str(), human_bytes(s.used).c_str(),
                human_bytes(s.free).c_str(), s.objects.size(), creator.c_str(),
                human_age(s.created).c_str(), s.mapped_by.size(),
                s.read_only ? "  READ-ONLY" : (s.persist ? "  persist" : ""));
  }
  if (segs.empty()) std::printf("(no mpp segments in /dev/shm, and no anonymous ones)\n");
  return kOk;
}

void print_show(const SegmentInfo& s) {
  std::printf("segment %s: %s, %s used, %s free; created %s ago by pid %d (%s)%s\n",
              s.name.c_str(), human_bytes(s.size).c_str(), human_bytes(s.used).c_str(),
              human_bytes(s.free).c_str(), human_age(s.created).c_str(), s.creator_pid,
              s.creator_alive ? "alive" : "dead", s.persist ? "; persisted" : "");
  std::printf("  grows up to %s (grew %llu times)\n", human_bytes(s.max_size).c_str(),
              static_cast<unsigned long long>(s.growths));
  std::printf("  mapped by %zu live process(es)", s.mapped_by.size());
  for (pid_t p : s.mapped_by) std::printf(" %d(%s)", p, process_name(p).c_str());
  std::printf("\n  allocator lock: %s; %llu recoveries; %s leaked\n", lock_text(s.heap_lock).c_str(),
              static_cast<unsigned long long>(s.heap_recoveries), human_bytes(s.leaked).c_str());
  std::printf("  directory lock: %s; %zu of %u entries used\n", lock_text(s.directory_lock).c_str(),
              s.objects.size(), s.directory_capacity);
  if (s.read_only) std::printf("  READ-ONLY: %s\n", s.read_only_reason.c_str());
  std::printf("\n%-24s %-17s %-28s %9s %10s %10s %11s  %s\n", "OBJECT", "KIND", "TYPES", "ELEMENTS",
              "BYTES", "LEAKED", "RECOVERIES", "LOCK");
  for (const auto& o : s.objects) {
    if (!o.problem.empty()) {
      std::printf("%-24s CORRUPT: %s\n", o.name.c_str(), o.problem.c_str());
      continue;
    }
    std::string types = o.key_type.empty() ? o.value_type : o.key_type + " -> " + o.value_type;
    if (types.size() > 28) types = types.substr(0, 25) + "...";
    std::printf("%-24s %-17s %-28s %9llu %10s %10s %11llu  %s\n", o.name.c_str(), o.kind.c_str(),
                types.c_str(), static_cast<unsigned long long>(o.count),
                human_bytes(o.bytes).c_str(), human_bytes(o.leaked).c_str(),
                static_cast<unsigned long long>(o.lock.recoveries),
                (o.get_lock ? "put " + lock_text(o.lock) + "; get " + lock_text(*o.get_lock)
                            : lock_text(o.lock)).c_str());
  }
  if (s.objects.empty()) std::printf("(no objects)\n");
}

const std::string& need_segment(const Args& a) {
  if (a.positional.empty()) usage_error(a.command + " needs a segment name");
  return a.positional[0];
}

int cmd_show(const Args& a) {
  MappedSegment m(need_segment(a));
  SegmentInfo s = read_segment(m, false);
  if (a.json) print_json(segment_json(s, true));
  else print_show(s);
  return kOk;
}

int cmd_check(const Args& a) {
  MappedSegment m(need_segment(a));
  SegmentInfo s = read_segment(m, true);
  std::vector<std::string> findings = s.findings;
  for (const auto& o : s.objects) {
    if (!o.problem.empty()) continue;
    guard_sigbus([&] {
      for (auto& f : check_object(m.base(), m.size(), o)) findings.push_back("object '" + o.name + "': " + f);
    });
  }
  if (a.json) {
    json::object out;
    out["segment"] = s.name;
    out["sound"] = findings.empty();
    json::array f;
    for (const auto& x : findings) f.push_back(json::value(x));
    out["findings"] = std::move(f);
    print_json(out);
  } else if (findings.empty()) {
    std::printf("%s: sound (%zu objects checked, heap free lists walked)\n", s.name.c_str(),
                s.objects.size());
  } else {
    std::printf("%s: %zu finding(s)\n", s.name.c_str(), findings.size());
    for (const auto& f : findings) std::printf("  - %s\n", f.c_str());
  }
  return findings.empty() ? kOk : kFindings;
}

int cmd_dump(const Args& a) {
  if (a.positional.size() < 2) usage_error("dump needs a segment and an object name");
  MappedSegment m(a.positional[0]);
  SegmentInfo s = read_segment(m, false);
  for (const auto& o : s.objects) {
    if (o.name != a.positional[1]) continue;
    if (!o.problem.empty()) throw InspectError(4, "object '" + o.name + "' is corrupt: " + o.problem);
    DumpResult d;
    guard_sigbus([&] { d = dump_object(m.base(), m.size(), o, a.limit); });
    if (a.json) {
      json::object out = object_json(o);
      json::array rows;
      for (const auto& r : d.rows) {
        json::object row;
        if (r.key) row["key"] = *r.key;
        row["value"] = r.value;
        rows.push_back(std::move(row));
      }
      out["entries"] = std::move(rows);
      out["truncated"] = d.truncated;
      if (!d.note.empty()) out["note"] = d.note;
      print_json(out);
    } else {
      std::printf("%s '%s' (%s%s%s), %llu element(s)\n", o.kind.c_str(), o.name.c_str(),
                  o.key_type.c_str(), o.key_type.empty() ? "" : " -> ", o.value_type.c_str(),
                  static_cast<unsigned long long>(o.count));
      for (const auto& r : d.rows) {
        if (r.key) std::printf("  %s: %s\n", r.key->c_str(), r.value.c_str());
        else std::printf("  %s\n", r.value.c_str());
      }
      if (d.truncated) std::printf("  ... (more; raise --limit)\n");
      if (!d.note.empty()) std::printf("  (%s)\n", d.note.c_str());
    }
    return kOk;
  }
  throw InspectError(3, "segment '" + s.name + "' has no object named '" + a.positional[1] + "'");
}

volatile sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

int cmd_watch(const Args& a) {
  const std::string& name = need_segment(a);
  bool tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO) && !a.json;
  termios saved{};
  if (tty) {
    tcgetattr(STDIN_FILENO, &saved);
    termios raw = saved;
    raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
    tcsetattr(STDIN_FILENO, TCSANOW, &raw);
  }
  signal(SIGINT, on_stop);
  signal(SIGTERM, on_stop);
  long refreshes = 0;
  int rc = kOk;
  try {
    while (!g_stop && (!a.count || refreshes < *a.count)) {
      MappedSegment m(name);
      SegmentInfo s = read_segment(m, false);
      if (a.json) {
        print_json(segment_json(s, true));
      } else {
        if (tty) std::printf("\033[H\033[2J");
        char when[32];
        std::time_t now = std::time(nullptr);
        std::strftime(when, sizeof when, "%H:%M:%S", std::localtime(&now));
        std::printf("mpp-inspect watch %s — %s, every %gs (q to quit)\n\n", name.c_str(), when, a.interval);
        print_show(s);
      }
      std::fflush(stdout);
      ++refreshes;
      if (a.count && refreshes >= *a.count) break;
      pollfd p{STDIN_FILENO, POLLIN, 0};
      int ms = static_cast<int>(a.interval * 1000);
      if (poll(&p, tty ? 1 : 0, ms) > 0 && tty) {
        char c;
        if (read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q')) break;
      }
    }
  } catch (...) {
    if (tty) tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    throw;
  }
  if (tty) tcsetattr(STDIN_FILENO, TCSANOW, &saved);
  return rc;
}

bool remove_segment(const std::string& name, std::string& err) {
  if (shm_unlink(name.c_str()) == 0) return true;
  err = std::strerror(errno);
  return false;
}

int cmd_gc(const Args& a) {
  json::array removed, kept, failed;
  int rc = kOk;
  const std::string prefix = a.positional.empty() ? "" : a.positional[0];
  for (const auto& name : shm_files()) {
    if (name.rfind(prefix, 0) != 0) continue;
    SegmentInfo s;
    try {
      MappedSegment m(name);
      s = read_segment(m, false);
    } catch (const InspectError&) {
      continue;  // not an mpp segment: not ours to remove
    }
    std::string why;
    if (s.creator_alive) why = "creator " + std::to_string(s.creator_pid) + " is alive";
    else if (!s.mapped_by.empty()) why = std::to_string(s.mapped_by.size()) + " live process(es) map it";
    else if (s.persist && !a.include_persisted) why = "persisted (use --include-persisted)";
    if (!why.empty()) {
      json::object k;
      k["name"] = name;
      k["reason"] = why;
      kept.push_back(std::move(k));
      if (!a.json) std::printf("keep    %s: %s\n", name.c_str(), why.c_str());
      continue;
    }
    std::string err;
    if (a.dry_run || remove_segment(name, err)) {
      removed.push_back(json::value(name));
      if (!a.json) {
        std::printf("%s %s (creator %d dead, unmapped, %s)\n", a.dry_run ? "would remove" : "removed",
                    name.c_str(), s.creator_pid, human_bytes(s.size).c_str());
      }
    } else {
      json::object f;
      f["name"] = name;
      f["error"] = err;
      failed.push_back(std::move(f));
      if (!a.json) std::printf("FAILED  %s: %s\n", name.c_str(), err.c_str());
      rc = kFindings;
    }
  }
  if (a.json) {
    json::object out;
    out["dry_run"] = a.dry_run;
    out[a.dry_run ? "would_remove" : "removed"] = std::move(removed);
    out["kept"] = std::move(kept);
    out["failed"] = std::move(failed);
    print_json(out);
  }
  return rc;
}

int cmd_rm(const Args& a) {
  const std::string& name = need_segment(a);
  if (name.find('/') != std::string::npos) usage_error("rm takes a segment name, not a path");
  MappedSegment m(name);  // refuses files that are not mpp segments
  SegmentInfo s = read_segment(m, false);
  if (!s.mapped_by.empty() && !a.force) {
    std::cerr << "mpp-inspect: " << name << " is mapped by " << s.mapped_by.size()
              << " live process(es); they keep their mapping, but nobody can attach to it "
                 "afterwards. Use --force to remove it anyway.\n";
    return kFindings;
  }
  std::string err;
  bool ok = remove_segment(name, err);
  if (a.json) {
    json::object out;
    out["name"] = name;
    out["removed"] = ok;
    if (!ok) out["error"] = err;
    print_json(out);
  } else if (ok) {
    std::printf("removed %s\n", name.c_str());
  } else {
    std::cerr << "mpp-inspect: cannot remove " << name << ": " << err << "\n";
  }
  return ok ? kOk : kFindings;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  if (a.command.empty() || a.command == "help") {
    std::cout << kHelp;
    return a.command.empty() && !a.help ? kUsage : kOk;
  }
  if (a.help) {
    std::cout << kHelp;
    return kOk;
  }
  static const std::map<std::string, int (*)(const Args&)> commands = {
      {"list", cmd_list}, {"show", cmd_show}, {"dump", cmd_dump}, {"check", cmd_check},
      {"watch", cmd_watch}, {"gc", cmd_gc}, {"rm", cmd_rm}};
  auto it = commands.find(a.command);
  if (it == commands.end()) usage_error("unknown command '" + a.command + "'");
  try {
    return it->second(a);
  } catch (const InspectError& e) {
    if (a.json) {
      json::object out;
      out["error"] = e.what();
      out["exit_code"] = e.code();
      print_json(out);
    }
    std::cerr << "mpp-inspect: " << e.what() << "\n";
    return e.code();
  } catch (const std::exception& e) {
    std::cerr << "mpp-inspect: " << e.what() << "\n";
    return 4;
  }
}
