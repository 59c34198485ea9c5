// Replacing a value by one of the same length where it lies, so that a writer killed at any
// store leaves the old value or the new one, never a mix, with no allocation and no free
// (docs/design/list-reads.md, docs/design/dict-concurrency.md). Shared by the Dict and the
// List:
//   - 1, 2, 4 or 8 bytes: one aligned store (store_in_one);
//   - longer: the new bytes are staged in the container's scratch block (one per lock, kept
//     for the next replacement), then the intent record says where they go (its `index`:
//     the target's offset, `size_before`: the length) and its op store commits, then the
//     copy; the recovery of a dead writer copies again from the scratch block.
// Both run under the container's exclusive lock; `step` is the container's crash-test hook,
// called between any two stores.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "mpp/detail/intent.hpp"

namespace mpp::detail {

class Segment;

// The staging block of in-place replacements: `capacity` bytes of data after the header.
struct ScratchBlock {
  std::uint64_t capacity = 0;
  std::uint64_t reserved = 0;
  std::byte* data() { return reinterpret_cast<std::byte*>(this + 1); }
};

using StepHook = void (*)() noexcept;

// Stores `v` (1, 2, 4 or 8 bytes) into `dst` (aligned to its size) with one aligned store,
// so that a reader after a crash sees the old value or the new one; false for other sizes.
inline bool store_in_one(std::byte* dst, std::span<const std::byte> v) noexcept {
  switch (v.size()) {
    case 1: std::atomic_ref<std::uint8_t>(*reinterpret_cast<std::uint8_t*>(dst)).store(static_cast<std::uint8_t>(v[0]), std::memory_order_relaxed); return true;
    case 2: { std::uint16_t x; std::memcpy(&x, v.data(), 2); std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(dst)).store(x, std::memory_order_relaxed); return true; }
    case 4: { std::uint32_t x; std::memcpy(&x, v.data(), 4); std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(dst)).store(x, std::memory_order_relaxed); return true; }
    case 8: { std::uint64_t x; std::memcpy(&x, v.data(), 8); std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(dst)).store(x, std::memory_order_relaxed); return true; }
    default: return false;
  }
}

// The scratch block at `off` if it can be one (in the heap, aligned, its capacity fitting),
// else nullptr.
ScratchBlock* scratch_if_plausible(Segment& seg, std::uint64_t off) noexcept;

// The scratch block `word` names when it holds `bytes`, else a larger one allocated and
// published in `word` (recorded in `in` under `op_scratch`; the old one retired and freed;
// `held` counts the difference). nullptr when the heap has no room: the caller then replaces
// the value the ordinary way. `in.op` must be 0 (no change in flight).
ScratchBlock* scratch_for(Segment& seg, Intent& in, std::uint32_t op_scratch,
                          std::atomic<std::uint64_t>& word, std::atomic<std::uint64_t>& held,
                          std::uint64_t bytes, StepHook step) noexcept;

// Copies `v` over `dst` (`target`: the offset the container's recovery resolves to `dst`)
// through `sb`, committed by `in`'s op store of `op_assign`. `in.op` must be 0: the two
// fields op_assign uses are filled in first and the op store alone commits (the recovery of
// op_assign reads nothing else; every other op clears the whole record when it begins).
void assign_staged(Intent& in, std::uint32_t op_assign, ScratchBlock& sb, std::uint64_t target,
                   std::byte* dst, std::span<const std::byte> v, StepHook step) noexcept;

// Recovery of op_assign: the target offset and length the record names, for the container
// to check (is it live, of that length?) before it calls redo_assign with the bytes.
inline std::uint64_t assign_target(const Intent& in) noexcept { return in.index.load(); }
inline std::uint64_t assign_length(const Intent& in) noexcept { return in.size_before.load(); }
// Copies the staged value again over `dst` when `sb` holds it, then ends the record.
void redo_assign(Intent& in, ScratchBlock* sb, std::byte* dst) noexcept;

}  // namespace mpp::detail
