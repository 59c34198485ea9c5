// Python's Pipe example: a child sends two lists through a Pipe, the parent receives both.
// (Python: parent_conn, child_conn = Pipe(); conn.send([1,2,3]) ...)
#include <boost/serialization/vector.hpp>
#include <cstdio>
#include <functional>
#include <vector>

#include "mpp/pipe.hpp"
#include "mpp/process.hpp"

namespace {

void put_id(mpp::Connection<std::vector<int>>& conn) {
  conn.send({1, 2, 3});
  conn.send({4, 5, 6});
  conn.close();
}

void print(const std::vector<int>& v) {
  std::printf("[");
  for (std::size_t i = 0; i < v.size(); ++i) std::printf(i ? ", %d" : "%d", v[i]);
  std::printf("]\n");
}

}  // namespace

int main() {
  // Two ends, like two telephones joined by a line; child_conn goes to the child.
  auto [parent_conn, child_conn] = mpp::Pipe<std::vector<int>>();
  mpp::Process p(put_id, std::ref(child_conn));
  p.start();
  print(parent_conn.recv());  // [1, 2, 3]
  print(parent_conn.recv());  // [4, 5, 6]
  p.join();
  return p.exitcode() == 0 ? 0 : 1;
}
