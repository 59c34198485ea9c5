// The flags the network examples share: --host (127.0.0.1), --port (5000) and --authkey
// (abc), the defaults of examples/python/task_master.py, plus whatever `extra` flags an
// example takes; and run(), which turns an error into one line on stderr and exit status 1.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <string>

#include "mpp/detail/demangle.hpp"
#include "mpp/net/manager.hpp"

namespace net_example {

struct Flags {
  mpp::net::Address address{"127.0.0.1", 5000};
  std::string authkey = "abc";
};

// Parses `--name value` pairs. `extra(name, value)` may take a flag the example adds and
// returns whether it did (it may throw std::invalid_argument for a bad value). --help or -h
// prints "usage: PROGRAM `usage`" and `about` to stdout and exits with 0; an unknown flag, a
// flag without a value or a bad value prints the usage line to stderr and exits with 2.
inline Flags parse(int argc, char** argv, const char* usage = "[--host H] [--port P] [--authkey K]",
                   const std::function<bool(const char*, const char*)>& extra = {},
                   const char* about = "") {
  Flags f;
  auto fail = [&](const std::string& why) {
    std::fprintf(stderr, "%s: %s\nusage: %s %s\n", argv[0], why.c_str(), argv[0], usage);
    std::exit(2);
  };
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf("usage: %s %s\n%s", argv[0], usage, about);
      std::exit(0);
    }
  }
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) fail(std::string("the flag ") + argv[i] + " needs a value");
    const char* name = argv[i];
    const char* value = argv[i + 1];
    try {
      if (!std::strcmp(name, "--host")) {
        f.address.host = value;
      } else if (!std::strcmp(name, "--port")) {
        std::size_t end = 0;
        int port = std::stoi(value, &end);
        if (value[end] != '\0' || port < 0 || port > 65535) throw std::invalid_argument("port");
        f.address.port = static_cast<std::uint16_t>(port);
      } else if (!std::strcmp(name, "--authkey")) {
        f.authkey = value;
      } else if (!extra || !extra(name, value)) {
        fail(std::string("unknown flag ") + name);
      }
    } catch (const std::logic_error&) {  // std::stoi/stod: invalid_argument, out_of_range
      fail(std::string("bad value '") + value + "' for " + name);
    }
  }
  return f;
}

// Runs `body` and returns its exit status; an exception (a refused connection, a wrong
// authkey, a server gone) becomes "PROGRAM: error: TYPE: what" on stderr and status 1,
// instead of std::terminate's abort.
inline int run(const char* program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const mpp::Error& e) {
    // "mpp::AuthenticationError: digest sent was rejected" as one line.
    std::string what = e.what();
    for (char& ch : what)
      if (ch == '\n') ch = ' ';
    std::fprintf(stderr, "%s: error: %s: %s\n", program,
                 mpp::detail::current_exception_type_name().c_str(), what.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
  }
  return 1;
}

}  // namespace net_example
