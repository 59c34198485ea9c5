// examples/python/task_worker.py over Redis: takes tasks from the master's queue, squares
// them, puts the results back, and acknowledges each task only once its result is out — if
// this worker dies in between, the task goes to another worker after the visibility timeout.
//
//   redis_task_worker --url redis://:password@10.0.0.5:6379/0
#include <mpp/redis/queue.hpp>

#include <cstdlib>
#include <iostream>
#include <string>

#include "redis_task_flags.hpp"

int main(int argc, char** argv) {
  try {
    redis_task::Flags f = redis_task::parse(argc, argv, 1);
    auto conn = std::make_shared<mpp::redis::Connection>(f.url);
    mpp::redis::Queue<int> task(conn, f.prefix + "task_queue");
    mpp::redis::Queue<std::string> result(conn, f.prefix + "result_queue");

    for (int i = 0; i < f.tasks; ++i) {
      try {
        int n = task.get(std::chrono::seconds(f.timeout_s));
        std::cout << "run task " << n << "*" << n << std::endl;
        result.put(std::to_string(n) + " * " + std::to_string(n) + " = " +
                   std::to_string(n * n));
        task.task_done();
      } catch (const mpp::Empty&) {
        std::cout << "task queue is empty" << std::endl;
      }
    }
    std::cout << "worker exit" << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "redis_task_worker: " << e.what() << "\n";
  }
  return 1;
}
