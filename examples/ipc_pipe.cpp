// Python's Pipe example: a child sends two lists through a Pipe, the parent receives until
// the child's end is closed. (Python: parent_conn, child_conn = Pipe(); Process(target=f,
// args=(child_conn,)); ... conn.recv() until EOFError.)
#include <cstdio>
#include <utility>
#include <vector>

#include "mpp/pipe.hpp"
#include "mpp/process.hpp"

namespace {

void put_id(mpp::Connection<std::vector<int>>& conn) {
  conn.send({1, 2, 3});
  conn.send({4, 5, 6});
}  // the child's end closes when the child exits

void print(const std::vector<int>& v) {
  std::printf("[");
  for (std::size_t i = 0; i < v.size(); ++i) std::printf(i ? ", %d" : "%d", v[i]);
  std::printf("]\n");
}

}  // namespace

int main() {
  // Two ends, like two telephones joined by a line; child_conn goes to the child.
  auto [parent_conn, child_conn] = mpp::Pipe<std::vector<int>>();
  // Handed over with std::move: the Process drops it in the parent after start(), as
  // Python does, so the only open copy of child_conn is the child's. (Passing child_conn
  // itself does not compile: a Connection cannot be copied, and the message says so.)
  mpp::Process p(put_id, std::move(child_conn));
  p.start();
  try {
    for (;;) print(parent_conn.recv());  // [1, 2, 3] then [4, 5, 6]
  } catch (const mpp::EOFError&) {
    std::printf("the child closed its end\n");
  }
  p.join();
  return p.exitcode() == 0 ? 0 : 1;
}
