#include "procfs.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>

namespace mpp::inspect {
namespace {

std::optional<double> boot_time() {
  std::ifstream f("/proc/stat");
  std::string key;
  while (f >> key) {
    if (key == "btime") {
      double t;
      if (f >> t) return t;
      return std::nullopt;
    }
    std::string rest;
    std::getline(f, rest);
  }
  return std::nullopt;
}

// Field 3 (state) and field 22 (starttime in clock ticks) of /proc/<pid>/stat. The command
// name (field 2) may contain spaces and parentheses, so parse from the last ')'.
bool read_stat(pid_t pid, char& state, unsigned long long& start_ticks) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return false;
  auto close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 1));
  rest >> state;
  std::string skip;
  for (int field = 4; field < 22; ++field) rest >> skip;
  return static_cast<bool>(rest >> start_ticks);
}

}  // namespace

bool pid_alive(pid_t pid) {
  if (pid <= 0) return false;
  char state;
  unsigned long long ticks;
  if (!read_stat(pid, state, ticks)) return kill(pid, 0) == 0 || errno == EPERM;
  return state != 'Z' && state != 'X';
}

std::optional<double> process_start_time(pid_t pid) {
  char state;
  unsigned long long ticks;
  if (pid <= 0 || !read_stat(pid, state, ticks)) return std::nullopt;
  auto bt = boot_time();
  if (!bt) return std::nullopt;
  return *bt + static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

bool same_process_alive(pid_t pid, double since) {
  if (!pid_alive(pid)) return false;
  auto start = process_start_time(pid);
  // Start times are only as precise as a clock tick and the boot time's whole second.
  return !start || *start <= since + 1.5;
}

std::map<std::string, std::vector<pid_t>> shm_mappers() {
  std::map<std::string, std::set<pid_t>> found;
  DIR* proc = opendir("/proc");
  if (!proc) return {};
  while (dirent* e = readdir(proc)) {
    char* end;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    std::ifstream maps(std::string("/proc/") + e->d_name + "/maps");
    std::string line;
    while (std::getline(maps, line)) {
      auto at = line.find("/dev/shm/");
      if (at == std::string::npos) continue;
      std::string name = line.substr(at + 9);
      if (auto del = name.find(" (deleted)"); del != std::string::npos) continue;
      found[name].insert(static_cast<pid_t>(pid));
    }
  }
  closedir(proc);
  std::map<std::string, std::vector<pid_t>> out;
  for (auto& [name, pids] : found) out[name] = {pids.begin(), pids.end()};
  return out;
}

namespace {

// What an anonymous segment's memfd is called in /proc (runtime/segment.cpp names it).
constexpr std::string_view kMemfdPrefix = "/memfd:mpp-segment";

std::vector<pid_t> live_pids() {
  std::vector<pid_t> out;
  DIR* proc = opendir("/proc");
  if (!proc) return out;
  while (dirent* e = readdir(proc)) {
    char* end;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end == '\0' && pid > 0) out.push_back(static_cast<pid_t>(pid));
  }
  closedir(proc);
  return out;
}

}  // namespace

std::vector<MemfdSegment> memfd_segments() {
  std::map<std::uint64_t, MemfdSegment> found;
  std::map<std::uint64_t, std::set<pid_t>> mappers;
  for (pid_t pid : live_pids()) {
    const std::string dir = "/proc/" + std::to_string(pid);
    // Mappings: "start-end perms offset dev inode /memfd:mpp-segment (deleted)".
    std::ifstream maps(dir + "/maps");
    std::string line;
    while (std::getline(maps, line)) {
      if (line.find(kMemfdPrefix) == std::string::npos) continue;
      std::istringstream fields(line);
      std::string range, perms, offset, dev;
      std::uint64_t inode = 0;
      if (!(fields >> range >> perms >> offset >> dev >> inode) || inode == 0) continue;
      mappers[inode].insert(pid);
      auto& seg = found[inode];
      if (offset == "00000000") seg.paths.push_back(dir + "/map_files/" + range);
    }
    // Descriptors: the processes that hold a growable segment's memfd.
    if (DIR* fds = opendir((dir + "/fd").c_str())) {
      while (dirent* e = readdir(fds)) {
        if (e->d_name[0] == '.') continue;
        std::string path = dir + "/fd/" + e->d_name;
        char target[256];
        ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
        if (n <= 0) continue;
        if (std::string_view(target, static_cast<std::size_t>(n)).substr(0, kMemfdPrefix.size()) != kMemfdPrefix) continue;
        struct stat st {};
        if (stat(path.c_str(), &st) != 0) continue;
        auto& seg = found[st.st_ino];
        seg.paths.insert(seg.paths.begin(), path);  // a descriptor opens without privileges
      }
      closedir(fds);
    }
  }
  std::vector<MemfdSegment> out;
  for (auto& [inode, seg] : found) {
    seg.inode = inode;
    seg.name = "memfd:" + std::to_string(inode);
    auto& pids = mappers[inode];
    seg.mapped_by.assign(pids.begin(), pids.end());
    out.push_back(std::move(seg));
  }
  return out;
}

std::string process_name(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  if (!std::getline(f, name)) return "?";
  return name;
}

}  // namespace mpp::inspect
