// Following an offset read from shared memory safely. A segment's bytes can be anything (a
// bit flipped on disk, a foreign writer, a bug): before an object follows an offset it read
// there, it checks that the target lies inside the heap, is aligned, and has room for what
// it claims to hold; a check that fails is a SegmentError naming the object, never a signal.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mpp::detail {

class Segment;

// True when [off, off + bytes) lies inside `seg`'s heap (and its mapping) and `off` is a
// multiple of `align`. Overflow-safe for any 64-bit inputs.
bool in_heap(Segment& seg, std::uint64_t off, std::uint64_t bytes,
             std::uint64_t align = 16) noexcept;

// The directory name of the object whose state is at `state` in `seg`, or "" if none.
std::string object_name(Segment& seg, const void* state);

// Throws SegmentError("the <kind> '<name>' is corrupt: <what>; ...").
[[noreturn]] void throw_corrupt(Segment& seg, const void* state, std::string_view kind,
                                std::string_view what);

}  // namespace mpp::detail
