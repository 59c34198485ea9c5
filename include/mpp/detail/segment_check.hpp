// Read-only checks of a segment image, shared by the library (attach, the allocator's
// recovery) and mpp-inspect. They never write, never lock, and never follow an offset they
// have not bounds-checked, so they are safe on a foreign, truncated or corrupt file and on
// a read-only mapping. Each returns what is wrong in one sentence, or an empty string.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "mpp/detail/segment_format.hpp"

namespace mpp::detail {

// The header of a mapping of `file_size` bytes: magic, version, size, that the directory
// and the heap header lie inside the file, that the heap ends within `size`, and that the
// heap header's first block and `top` are where a heap's can be. Call nothing else unless it
// is empty.
std::string header_problem(const SegmentHeader& h, std::size_t file_size);

// The heap of a segment whose header is sound: its bounds, and every free list (each entry
// a free block of its class inside the used part of the heap, no cycles). Stores the bytes
// found on free lists in *free_listed. A live segment may change while this runs; callers
// that do not hold the allocator's lock treat a finding as "look again".
std::string heap_problem(const void* base, std::size_t size, std::uint64_t* free_listed = nullptr);

// A published directory entry of a segment whose header is sound: NUL-terminated names, a
// known kind, and an object state that starts inside the heap with room for an ObjectHeader.
std::string entry_problem(const void* base, std::size_t size, const DirectoryEntry& e);

}  // namespace mpp::detail
