// examples/python/task_master.py over Redis: the master puts tasks on a queue that workers on
// other machines take from, and collects their results. Run redis_task_worker on as many
// machines as you like, with the same --url.
//
//   redis_task_master --url redis://:password@10.0.0.5:6379/0
//
// Unlike a BaseManager's queues, these live in Redis: the master may restart, workers may
// die (their unacknowledged tasks go to another worker), and the queues stay.
#include <mpp/redis/queue.hpp>

#include <cstdlib>
#include <iostream>
#include <random>
#include <string>

#include "redis_task_flags.hpp"

int main(int argc, char** argv) {
  try {
    redis_task::Flags f = redis_task::parse(argc, argv, 60);
    auto conn = std::make_shared<mpp::redis::Connection>(f.url);
    mpp::redis::Queue<int> task(conn, f.prefix + "task_queue");
    mpp::redis::Queue<std::string> result(conn, f.prefix + "result_queue");

    std::mt19937 rng(std::random_device{}());
    std::uniform_int_distribution<int> dist(0, 1000);
    for (int i = 0; i < f.tasks; ++i) {
      int n = dist(rng);
      std::cout << "Put Task " << n << std::endl;
      task.put(n);
    }
    std::cout << "Try get results" << std::endl;
    for (int i = 0; i < f.tasks; ++i) {
      std::string r = result.get(std::chrono::seconds(f.timeout_s));
      result.task_done();
      std::cout << "Result: " << r << std::endl;
    }
    std::cout << "master exit" << std::endl;
    return 0;
  } catch (const mpp::Empty&) {
    std::cerr << "redis_task_master: no result came in time; are workers running?\n";
  } catch (const std::exception& e) {
    std::cerr << "redis_task_master: " << e.what() << "\n";
  }
  return 1;
}
