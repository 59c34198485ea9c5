#include "mpp/detail/intent.hpp"

#include <unordered_set>

#include "mpp/detail/segment.hpp"

namespace mpp::detail {

void Intent::begin(std::uint32_t code) noexcept {
  allocating.store(0, std::memory_order_relaxed);
  pending.store(0, std::memory_order_relaxed);
  for (int i = 0; i < 2; ++i) {
    fresh[i].store(0, std::memory_order_relaxed);
    old[i].store(0, std::memory_order_relaxed);
    old_bytes[i].store(0, std::memory_order_relaxed);
  }
  index.store(0, std::memory_order_relaxed);
  size_before.store(0, std::memory_order_relaxed);
  op.store(code, std::memory_order_release);
}

void Intent::end() noexcept { op.store(0, std::memory_order_release); }

void* Intent::allocate(Segment& seg, std::size_t bytes, int slot) {
  allocating.store(bytes, std::memory_order_relaxed);
  void* p = nullptr;
  try {
    p = seg.allocate(bytes);
  } catch (...) {
    allocating.store(0, std::memory_order_relaxed);
    throw;
  }
  fresh[slot].store(seg.offset_of(p), std::memory_order_relaxed);
  allocating.store(0, std::memory_order_relaxed);
  return p;
}

void* Intent::allocate_pending(Segment& seg, std::size_t bytes) {
  // In fresh[1] until it is on the chain; a crash in between is settled once.
  void* p = allocate(seg, bytes, 1);
  auto off = seg.offset_of(p);
  static_cast<std::atomic<std::uint64_t>*>(p)->store(pending.load(std::memory_order_relaxed),
                                                     std::memory_order_relaxed);
  pending.store(off, std::memory_order_relaxed);
  fresh[1].store(0, std::memory_order_relaxed);
  return p;
}

bool finish_intent(Segment& seg, Intent& intent, std::atomic<std::uint64_t>& leaked,
                   const std::function<bool(std::uint64_t)>& reachable) {
  if (intent.op.load(std::memory_order_acquire) == 0) return false;
  const auto& h = seg.header();
  auto in_heap = [&](std::uint64_t off) {
    return off >= h.heap_offset && off < h.heap_offset + h.heap_size && off % 16 == 0;
  };
  std::unordered_set<std::uint64_t> freed;
  auto free_if_unreachable = [&](std::uint64_t off) {
    if (off == 0 || !in_heap(off) || freed.count(off) || reachable(off)) return;
    freed.insert(off);
    seg.deallocate(seg.at(off));
  };
  // The pending chain, bounded (a chain longer than the heap could hold is a cycle).
  std::uint64_t steps = h.heap_size / 32;
  std::uint64_t off = intent.pending.load(std::memory_order_relaxed);
  while (off != 0 && in_heap(off) && steps-- > 0) {
    std::uint64_t next = seg.at<std::atomic<std::uint64_t>>(off)->load(std::memory_order_relaxed);
    free_if_unreachable(off);
    off = next;
  }
  for (auto& f : intent.fresh) free_if_unreachable(f.load(std::memory_order_relaxed));
  leaked.fetch_add(intent.allocating.load(std::memory_order_relaxed), std::memory_order_relaxed);
  for (int i = 0; i < 2; ++i) {
    std::uint64_t o = intent.old[i].load(std::memory_order_relaxed);
    if (o != 0 && !reachable(o)) {
      leaked.fetch_add(intent.old_bytes[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
  }
  intent.end();
  return true;
}

}  // namespace mpp::detail
