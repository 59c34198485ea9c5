// expect: include <mpp/archive.hpp> where it is sent or received
// names: Order
// A type with serialize() is sent through a Boost archive, whose header only the files
// that need it include: forgetting it is one clear error.
#include <vector>

#include "mpp/pipe.hpp"

struct Order {
  std::vector<int> items;
  template <class Ar>
  void serialize(Ar& ar, unsigned) {
    ar & items;
  }
};

int main() {
  auto [a, b] = mpp::Pipe<std::vector<Order>>();
  a.send({Order{{1, 2}}});
  return b.recv().size() == 1 ? 0 : 1;
}
