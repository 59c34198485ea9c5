#include "workloads.hpp"
namespace bench {
void add_queues(Plan&) {}
}  // namespace bench
