// The distributed task master with mpp's shared-memory queues: the master serves an mpp::Queue
// over the wire protocol of multiprocessing.managers, so a local worker process takes tasks
// from shared memory (no socket, no pickle) while a remote worker —
// examples/python/task_worker.py or mpp's task_worker — takes them from the same queue over
// TCP. Both put their results into one shared-memory result queue, which the master reads
// directly.
//
// 20 tasks: the local worker takes exactly 10, the remote worker (10 gets) the other 10.
// Flags: --host (127.0.0.1), --port (5000; 0 picks a free one), --authkey (abc).
#include <cstdio>
#include <string>

#include "mpp/net/manager.hpp"
#include "mpp/process.hpp"
#include "mpp/queue.hpp"
#include "net_flags.hpp"

int main(int argc, char** argv) {
  const net_example::Flags flags =
      net_example::parse(argc, argv, "[--host H] [--port P] [--authkey K]", {},
                         "Serves two shared-memory queues: a local process and a remote worker "
                         "take 10 of the 20 tasks each.\n");
  const mpp::net::Address& address = flags.address;
  const std::string& authkey = flags.authkey;

  return net_example::run(argv[0], [&] {
    mpp::Queue<std::int64_t> task;  // shared memory, shared with the processes forked below
    mpp::Queue<std::string> result;
    for (std::int64_t n = 1; n <= 20; ++n) task.put(n);

    // The manager's server process serves handles on the same two queues.
    mpp::net::BaseManager manager(address, authkey);
    manager.register_("get_task_queue", task);
    manager.register_("get_result_queue", result);
    manager.start();

    // A local worker: straight from shared memory.
    mpp::Process local([task, result]() mutable {
      for (int i = 0; i < 10; ++i) {
        std::int64_t n = task.get();
        result.put("local: " + std::to_string(n) + " * " + std::to_string(n) + " = " +
                   std::to_string(n * n));
      }
    });
    local.start();

    std::printf("master listening on %s:%u\n", manager.address().host.c_str(),
                manager.address().port);
    std::fflush(stdout);
    for (int i = 0; i < 20; ++i) {
      std::string r = result.get();
      // The remote worker's results are the "Result:" lines (the local ones say so).
      if (r.rfind("local: ", 0) == 0)
        std::printf("Local result: %s\n", r.c_str() + 7);
      else
        std::printf("Result: %s\n", r.c_str());
      std::fflush(stdout);
    }
    local.join();
    manager.shutdown();
    std::printf("master exit\n");
    return 0;
  });
}
