// The binary layout of an mpp segment, shared by the library and mpp-inspect, which reads
// it from a read-only mapping without knowing the objects' C++ types. Every field has a
// fixed size and offset; FORMAT_VERSION changes whenever any of them does.
//
// OWNED BY the shared-memory core (issue 3): extend and document it there. This first
// version fixes the names other components code against: ObjectKind, ObjectHeader.
#pragma once

#include <atomic>
#include <cstdint>

#include "mpp/detail/robust_mutex.hpp"

namespace mpp::detail {

enum class ObjectKind : std::uint32_t {
  none = 0,
  dict = 1,
  list = 2,
  value = 3,
  array = 4,
  queue = 5,
  joinable_queue = 6,
  simple_queue = 7,
  lock = 8,
  rlock = 9,
  semaphore = 10,
  bounded_semaphore = 11,
  event = 12,
  condition = 13,
  barrier = 14,
};

// The first member of every object's state in a segment. The object's own lock lives here,
// so mpp-inspect can name its holder and count its recoveries for any kind of object.
struct ObjectHeader {
  RobustMutex mutex;
  std::atomic<std::uint64_t> count{0};   // elements (dict/list size, queue depth), for inspect
  std::atomic<std::uint64_t> bytes{0};   // heap bytes the object holds, for inspect
  std::atomic<std::uint64_t> leaked{0};  // bytes given up by crash recoveries, for inspect
};

struct SegmentHeader;  // defined by the core (issue 3)

}  // namespace mpp::detail
