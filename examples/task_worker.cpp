// Distributed processes: examples/python/task_worker.py in C++. Connects to a task
// master — this repository's task_master or examples/python/task_master.py under Python —
// takes up to 10 tasks n and puts back "n * n = n²", as the Python worker does.
//
// Flags: --host (127.0.0.1), --port (5000), --authkey (abc), --delay (seconds of "work" per
// task; 1 by default, as the Python worker).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "mpp/net/manager.hpp"
#include "net_flags.hpp"

int main(int argc, char** argv) {
  double delay = 1.0;
  const net_example::Flags flags = net_example::parse(
      argc, argv, "[--host H] [--port P] [--authkey K] [--delay S]",
      [&](const char* name, const char* value) {
        if (std::strcmp(name, "--delay") != 0) return false;
        delay = std::stod(value);
        return true;
      },
      "Takes up to 10 tasks n from a task master's queue and puts back \"n * n = n^2\".\n");
  const mpp::net::Address& address = flags.address;
  const std::string& authkey = flags.authkey;

  return net_example::run(argv[0], [&] {
    mpp::net::BaseManager manager(address, authkey);
    manager.connect();
    auto task = manager.queue<std::int64_t>("get_task_queue");
    auto result = manager.queue<std::string>("get_result_queue");

    for (int i = 0; i < 10; ++i) {
      try {
        std::int64_t n = task.get(std::chrono::seconds(1));
        std::printf("run task %lld*%lld\n", static_cast<long long>(n), static_cast<long long>(n));
        std::fflush(stdout);
        std::string r =
            std::to_string(n) + " * " + std::to_string(n) + " = " + std::to_string(n * n);
        std::this_thread::sleep_for(std::chrono::duration<double>(delay));
        result.put(r);
      } catch (const mpp::Empty&) {
        std::printf("task queue is empty\n");
      }
    }
    std::printf("worker exit\n");
    return 0;
  });
}
