// The flags redis_task_master and redis_task_worker share: --url (default $MPP_REDIS_URL,
// else redis://127.0.0.1:6379/0), --prefix for the queues' key names, --tasks, --timeout.
#pragma once

#include <mpp/errors.hpp>

#include <cstdlib>
#include <string>

namespace redis_task {

struct Flags {
  std::string url;
  std::string prefix;
  int tasks = 10;
  int timeout_s = 0;
};

// Throws mpp::ValueError naming the flag and the flags there are.
inline Flags parse(int argc, char** argv, int default_timeout_s) {
  Flags f;
  f.timeout_s = default_timeout_s;
  if (const char* u = std::getenv("MPP_REDIS_URL")) f.url = u;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw mpp::ValueError(a + " needs a value");
      return argv[++i];
    };
    auto number = [&]() {
      std::string v = value();
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 0 || n > 1'000'000'000) {
        throw mpp::ValueError(a + " needs a non-negative whole number, not '" + v + "'");
      }
      return static_cast<int>(n);
    };
    if (a == "--url") f.url = value();
    else if (a == "--prefix") f.prefix = value();
    else if (a == "--tasks") f.tasks = number();
    else if (a == "--timeout") f.timeout_s = number();
    else throw mpp::ValueError("unknown flag " + a +
                               "; flags: --url redis://[user:password@]host:port/db "
                               "--prefix KEYPREFIX --tasks N --timeout SECONDS");
  }
  if (f.url.empty()) f.url = "redis://127.0.0.1:6379/0";
  return f;
}

}  // namespace redis_task
