// Tutorial section 10, "Distributed processes": task_worker.py in C++. Connects to a task
// master — this repository's task_master or the tutorial's task_master.py under Python —
// takes up to 10 tasks n and puts back "n * n = n²", as the Python worker does.
//
// Flags: --host (127.0.0.1), --port (5000), --authkey (abc), --delay (seconds of "work" per
// task; the tutorial's 1 by default).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "mpp/net/manager.hpp"

int main(int argc, char** argv) {
  mpp::net::Address address{"127.0.0.1", 5000};
  std::string authkey = "abc";
  double delay = 1.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--host")) address.host = argv[i + 1];
    else if (!std::strcmp(argv[i], "--port")) address.port = static_cast<std::uint16_t>(std::stoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--authkey")) authkey = argv[i + 1];
    else if (!std::strcmp(argv[i], "--delay")) delay = std::stod(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--host H] [--port P] [--authkey K] [--delay S]\n", argv[0]);
      return 2;
    }
  }

  mpp::net::BaseManager manager(address, authkey);
  manager.connect();
  auto task = manager.queue<std::int64_t>("get_task_queue");
  auto result = manager.queue<std::string>("get_result_queue");

  for (int i = 0; i < 10; ++i) {
    try {
      std::int64_t n = task.get(std::chrono::seconds(1));
      std::printf("run task %lld*%lld\n", static_cast<long long>(n), static_cast<long long>(n));
      std::fflush(stdout);
      std::string r = std::to_string(n) + " * " + std::to_string(n) + " = " + std::to_string(n * n);
      std::this_thread::sleep_for(std::chrono::duration<double>(delay));
      result.put(r);
    } catch (const mpp::Empty&) {
      std::printf("task queue is empty\n");
    }
  }
  std::printf("worker exit\n");
}
