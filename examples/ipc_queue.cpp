// Python's Queue example: a child puts a list into a Queue, the parent gets it. (Python: q =
// Queue(); Process(target=put_id, args=(q,)); print(q.get()))
#include <cstdio>
#include <vector>

#include "mpp/process.hpp"
#include "mpp/queue.hpp"

namespace {

void put_id(mpp::Queue<std::vector<int>> q) { q.put({1, 2, 3, 4}); }

}  // namespace

int main() {
  mpp::Queue<std::vector<int>> q;  // in shared memory, made before the child is forked
  mpp::Process p(put_id, q);
  p.start();
  std::vector<int> got = q.get();
  std::printf("[");
  for (std::size_t i = 0; i < got.size(); ++i) std::printf(i ? ", %d" : "%d", got[i]);
  std::printf("]\n");
  p.join();
  return p.exitcode() == 0 ? 0 : 1;
}
