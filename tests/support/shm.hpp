// What a test sees in /dev/shm: whether a segment's file is there, and the whole listing
// (to check that a test leaves /dev/shm as it found it).
#pragma once

#include <dirent.h>
#include <sys/stat.h>

#include <set>
#include <string>

namespace mpp::test {

inline bool shm_exists(const std::string& name) {
  struct stat st {};
  return stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

inline std::set<std::string> dev_shm() {
  std::set<std::string> out;
  if (DIR* d = opendir("/dev/shm")) {
    while (auto* e = readdir(d)) out.insert(e->d_name);
    closedir(d);
  }
  return out;
}

}  // namespace mpp::test
