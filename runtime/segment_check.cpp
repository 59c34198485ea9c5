#include "mpp/detail/segment_check.hpp"

#include <algorithm>
#include <cstring>

namespace mpp::detail {
namespace {

// [offset, offset + bytes) lies inside [lo, hi), without overflow.
bool inside(std::uint64_t offset, std::uint64_t bytes, std::uint64_t lo, std::uint64_t hi) {
  return offset >= lo && offset <= hi && bytes <= hi - offset;
}

const HeapHeader& heap_of(const void* base) {
  const auto& h = *static_cast<const SegmentHeader*>(base);
  return *reinterpret_cast<const HeapHeader*>(static_cast<const char*>(base) + h.heap_offset);
}

}  // namespace

std::string header_problem(const SegmentHeader& h, std::size_t file_size) {
  if (h.magic.load(std::memory_order_acquire) != SEGMENT_MAGIC) {
    return "it is not an mpp segment (wrong magic number)";
  }
  if (h.format_version != FORMAT_VERSION || h.header_bytes != sizeof(SegmentHeader)) {
    return "it has format version " + std::to_string(h.format_version) + ", this mpp reads " +
           std::to_string(FORMAT_VERSION);
  }
  // A file larger than `size` is a growth in progress (or one a crash cut short): fine.
  const std::uint64_t size = h.size.load(std::memory_order_acquire);
  if (size > file_size) {
    return "it is truncated: the header says " + std::to_string(size) + " bytes, the file has " +
           std::to_string(file_size);
  }
  if (h.max_size < size) return "its header is corrupt (size beyond its maximum)";
  const std::uint64_t dir_bytes = std::uint64_t{h.directory_capacity} * sizeof(DirectoryEntry);
  const std::uint64_t heap_size = h.heap_size.load(std::memory_order_acquire);
  if (h.directory_entry_bytes != sizeof(DirectoryEntry) || h.directory_offset % 8 != 0 ||
      !inside(h.directory_offset, dir_bytes, sizeof(SegmentHeader), size) ||
      h.directory_offset + dir_bytes > h.heap_offset || h.heap_offset % 16 != 0 ||
      !inside(h.heap_offset, heap_size, 0, h.max_size) || heap_size < sizeof(HeapHeader) ||
      !inside(h.heap_offset, sizeof(HeapHeader), 0, size)) {
    return "its header is corrupt (directory or heap outside the file)";
  }
  // heap_size is derived from size (stored after it by a grower): never more.
  if (heap_size > size - h.heap_offset) return "its header is corrupt (heap beyond the segment's size)";
  const auto& heap = *reinterpret_cast<const HeapHeader*>(reinterpret_cast<const char*>(&h) + h.heap_offset);
  const std::uint64_t top = heap.top.load(std::memory_order_relaxed);
  if (heap.first_block != h.heap_offset + (sizeof(HeapHeader) + 63) / 64 * 64 || top < heap.first_block ||
      top > size || top % 16 != 0) {
    return "its heap header is corrupt (first block or top outside the heap)";
  }
  if (std::memchr(h.name, '\0', sizeof h.name) == nullptr ||
      std::memchr(h.read_only_reason, '\0', sizeof h.read_only_reason) == nullptr) {
    return "its header is corrupt (unterminated name)";
  }
  return {};
}

std::string heap_problem(const void* base, std::size_t size, std::uint64_t* free_listed) {
  const auto& h = *static_cast<const SegmentHeader*>(base);
  const HeapHeader& heap = heap_of(base);
  const std::uint64_t heap_end = std::min<std::uint64_t>(h.size.load(std::memory_order_acquire), size);
  if (!inside(heap.first_block, 0, h.heap_offset + sizeof(HeapHeader), heap_end)) {
    return "the heap's bounds are corrupt";
  }
  const std::uint64_t top = heap.top.load(std::memory_order_relaxed);
  if (top < heap.first_block || top > heap_end || top % 16 != 0) {
    return "the heap's top (" + std::to_string(top) + ") is outside the heap";
  }
  const auto* bytes = static_cast<const char*>(base);
  auto header = [&](std::uint64_t off) { return reinterpret_cast<const BlockHeader*>(bytes + off); };
  // The chain: headers of known state whose sizes land exactly on `top`.
  std::uint64_t chain_free = 0;
  for (std::uint64_t off = heap.first_block; off < top;) {
    const std::uint64_t w = header(off)->word.load(std::memory_order_relaxed);
    const std::uint64_t bsize = w & SIZE_MASK, st = w & STATE_MASK;
    if ((w & TAG_MASK) != BLOCK_TAG || bsize < BLOCK_MIN_BYTES || bsize % 16 != 0 || bsize > top - off ||
        (st != static_cast<std::uint64_t>(BlockState::free) &&
         st != static_cast<std::uint64_t>(BlockState::allocated))) {
      return "the block at offset " + std::to_string(off) + " has a corrupt header";
    }
    if (st == static_cast<std::uint64_t>(BlockState::free)) chain_free += bsize;
    off += bsize;
  }
  // The lists: each entry a free block of its class inside the chain, back links matching,
  // no list longer than the heap could hold (a cycle).
  const std::uint64_t max_steps = (top - heap.first_block) / BLOCK_MIN_BYTES + 1;
  std::uint64_t listed = 0;
  for (std::uint32_t c = 0; c < HEAP_CLASSES; ++c) {
    std::uint64_t steps = 0, prev = 0;
    for (std::uint64_t off = heap.free_head[c].load(std::memory_order_relaxed); off != 0;) {
      if (!inside(off, BLOCK_MIN_BYTES, heap.first_block, top) || off % 16 != 0) {
        return "free list " + std::to_string(c) + " points outside the heap";
      }
      const std::uint64_t w = header(off)->word.load(std::memory_order_relaxed);
      const std::uint64_t bsize = w & SIZE_MASK;
      const auto* links = reinterpret_cast<const FreeLinks*>(bytes + off + BLOCK_HEADER_BYTES);
      if ((w & TAG_MASK) != BLOCK_TAG || (w & STATE_MASK) != static_cast<std::uint64_t>(BlockState::free) ||
          bsize < heap_class_bytes(c) || (c + 1 < HEAP_CLASSES && bsize >= heap_class_bytes(c + 1)) ||
          links->prev.load(std::memory_order_relaxed) != prev) {
        return "free list " + std::to_string(c) + " holds a block that is not a free block of its class";
      }
      if (++steps > max_steps) return "free list " + std::to_string(c) + " is a cycle";
      listed += bsize;
      prev = off;
      off = links->next.load(std::memory_order_relaxed);
    }
  }
  if (listed != chain_free) {
    return "the free lists hold " + std::to_string(listed) + " bytes, the chain's free blocks " +
           std::to_string(chain_free);
  }
  if (free_listed) *free_listed = listed;
  return {};
}

std::string entry_problem(const void* base, std::size_t size, const DirectoryEntry& e) {
  const auto& h = *static_cast<const SegmentHeader*>(base);
  if (std::memchr(e.name, '\0', sizeof e.name) == nullptr ||
      std::memchr(e.key_type, '\0', sizeof e.key_type) == nullptr ||
      std::memchr(e.value_type, '\0', sizeof e.value_type) == nullptr) {
    return "an entry's name or type is not terminated";
  }
  if (kind_name(e.kind) == "unknown" || e.kind == ObjectKind::none) {
    return "entry '" + std::string(e.name) + "' has an unknown kind " +
           std::to_string(static_cast<std::uint32_t>(e.kind));
  }
  if (!inside(e.object_offset, sizeof(ObjectHeader), h.heap_offset,
              std::min<std::uint64_t>(h.size.load(std::memory_order_acquire), size)) ||
      e.object_offset % alignof(ObjectHeader) != 0 || e.object_bytes < sizeof(ObjectHeader)) {
    return "entry '" + std::string(e.name) + "' points outside the heap";
  }
  return {};
}

}  // namespace mpp::detail
