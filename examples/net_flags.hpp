// The flags the network examples share: --host (127.0.0.1), --port (5000) and --authkey
// (abc), the defaults of examples/python/task_master.py, plus whatever `extra` flags an example takes.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "mpp/net/manager.hpp"

namespace net_example {

struct Flags {
  mpp::net::Address address{"127.0.0.1", 5000};
  std::string authkey = "abc";
};

// Parses `--name value` pairs. `extra(name, value)` may take a flag the example adds and
// returns whether it did. On any other flag prints `usage` and exits with 2.
inline Flags parse(int argc, char** argv, const char* usage = "[--host H] [--port P] [--authkey K]",
                   const std::function<bool(const char*, const char*)>& extra = {}) {
  Flags f;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--host")) f.address.host = argv[i + 1];
    else if (!std::strcmp(argv[i], "--port")) f.address.port = static_cast<std::uint16_t>(std::stoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--authkey")) f.authkey = argv[i + 1];
    else if (!extra || !extra(argv[i], argv[i + 1])) {
      std::fprintf(stderr, "usage: %s %s\n", argv[0], usage);
      std::exit(2);
    }
  }
  return f;
}

}  // namespace net_example
