// Built against the installed mpp::redis by tools/test: proves its headers, library and
// CMake metadata (hiredis found through mppConfig.cmake) are complete. Needs no server.
#include <mpp/redis/dict.hpp>
#include <mpp/redis/queue.hpp>

#include <iostream>

int main() {
  try {
    mpp::redis::Connection c("redis://127.0.0.1:1/0");  // nothing listens on port 1
  } catch (const mpp::ConnectionError& e) {
    std::cout << "consumer_redis: linked mpp::redis, caught " << e.what() << "\n";
    return 0;
  }
  return 1;
}
