#include "workloads.hpp"
namespace bench {
void add_pool(Plan&) {}
}  // namespace bench
