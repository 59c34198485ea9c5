// Distributed processes: examples/python/task_master.py in C++. A manager serves a task
// queue and a result queue over TCP; workers — this repository's task_worker, or
// examples/python/task_worker.py under Python — take tasks and put results. As in Python,
// start() forks the server process and the master itself uses the queues through proxies.
//
// Flags: --host (127.0.0.1), --port (5000; 0 picks a free one), --authkey (abc).
#include <cstdio>
#include <random>
#include <string>

#include "mpp/net/manager.hpp"
#include "net_flags.hpp"

int main(int argc, char** argv) {
  const net_example::Flags flags =
      net_example::parse(argc, argv, "[--host H] [--port P] [--authkey K]", {},
                         "Serves a task queue and a result queue, puts 10 tasks and prints the 10 "
                         "results workers put back.\n");
  const mpp::net::Address& address = flags.address;
  const std::string& authkey = flags.authkey;

  return net_example::run(argv[0], [&] {
    // Register two queues on the network under the names the workers ask for.
    mpp::net::BaseManager manager(address, authkey);
    manager.register_("get_task_queue", std::make_shared<mpp::net::LocalQueue>());
    manager.register_("get_result_queue", std::make_shared<mpp::net::LocalQueue>());
    manager.start();
    std::printf("master listening on %s:%u\n", manager.address().host.c_str(),
                manager.address().port);
    std::fflush(stdout);

    {
      // Getting the queue objects through the network.
      auto task = manager.queue<std::int64_t>("get_task_queue");
      auto result = manager.queue<std::string>("get_result_queue");

      std::mt19937 rng(std::random_device{}());
      for (int i = 0; i < 10; ++i) {
        int n = std::uniform_int_distribution<int>(0, 1000)(rng);
        std::printf("Put Task %d\n", n);
        task.put(n);
      }
      std::printf("Try get results\n");
      for (int i = 0; i < 10; ++i) std::printf("Result: %s\n", result.get().c_str());
      std::fflush(stdout);
    }
    manager.shutdown();
    std::printf("master exit\n");
    return 0;
  });
}
