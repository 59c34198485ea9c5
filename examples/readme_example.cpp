// The example at the top of README.md, kept compiling and checked by ctest.
#include <mpp/manager.hpp>
#include <mpp/process.hpp>
#include <mpp/queue.hpp>

#include <iostream>
#include <string>
#include <vector>

int main() {
  mpp::Manager manager;                      // an anonymous segment, shared with children
  auto counts = manager.dict<std::string, int>("counts");
  mpp::Queue<std::string> results;           // a queue in shared memory

  std::vector<mpp::Process> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&](int id) {
      for (int i = 0; i < 1000; ++i) {
        counts.modify("hits", [](int& v) { v += 1; });  // atomic, across processes
      }
      results.put("worker " + std::to_string(id) + " done");
    }, w);
    workers.back().start();
  }
  for (int w = 0; w < 4; ++w) std::cout << results.get() << "\n";
  for (auto& p : workers) p.join();
  std::cout << "hits = " << counts["hits"] << "\n";  // 4000, exactly
}
