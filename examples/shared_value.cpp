// Python's docs, "Sharing state between processes": a Value and an Array in shared memory,
// changed by a child and seen by the parent.
#include <cstdio>

#include "mpp/array.hpp"
#include "mpp/process.hpp"
#include "mpp/value.hpp"

void f(mpp::Value<double> n, mpp::Array<int> a) {
  n.set_value(3.1415927);
  for (int& x : a) x = -x;  // straight into shared memory
}

int main() {
  mpp::Value<double> num(0.0);
  mpp::Array<int> arr{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  mpp::Process p(f, num, arr);
  p.start();
  p.join();
  std::printf("%.7f\n[", num.value());
  for (std::size_t i = 0; i < arr.size(); ++i) std::printf(i ? ", %d" : "%d", arr.get(static_cast<std::ptrdiff_t>(i)));
  std::printf("]\n");
}
