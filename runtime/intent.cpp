#include "mpp/detail/intent.hpp"

#include <unordered_set>

#include "mpp/detail/segment.hpp"
#include "mpp/detail/shm_bounds.hpp"

namespace mpp::detail {

void Intent::prepare() noexcept {
  crash_step();
  allocating.store(0, std::memory_order_relaxed);
  pending.store(0, std::memory_order_relaxed);
  for (int i = 0; i < 2; ++i) {
    fresh[i].store(0, std::memory_order_relaxed);
    old[i].store(0, std::memory_order_relaxed);
    old_bytes[i].store(0, std::memory_order_relaxed);
  }
  index.store(0, std::memory_order_relaxed);
  size_before.store(0, std::memory_order_relaxed);
}

// `allocating` says which slot the block will be recorded in (bytes << 1 | slot), and that
// slot is cleared first: recovery then counts the bytes as leaked only when the slot is still
// empty (the block was maybe allocated, never recorded), never for a block it frees.
void* Intent::allocate(Segment& seg, std::size_t bytes, int slot) {
  crash_step();
  fresh[slot].store(0, std::memory_order_relaxed);
  crash_step();
  allocating.store(std::uint64_t{bytes} << 1 | static_cast<std::uint64_t>(slot), std::memory_order_relaxed);
  void* p = nullptr;
  try {
    p = seg.allocate(bytes);
  } catch (...) {
    allocating.store(0, std::memory_order_relaxed);
    throw;
  }
  crash_step();
  fresh[slot].store(seg.offset_of(p), std::memory_order_relaxed);
  crash_step();
  allocating.store(0, std::memory_order_relaxed);
  return p;
}

void* Intent::allocate_pending(Segment& seg, std::size_t bytes) {
  // In fresh[1] until it is on the chain; a crash in between is settled once.
  void* p = allocate(seg, bytes, 1);
  auto off = seg.offset_of(p);
  static_cast<std::atomic<std::uint64_t>*>(p)->store(pending.load(std::memory_order_relaxed),
                                                     std::memory_order_relaxed);
  crash_step();
  pending.store(off, std::memory_order_relaxed);
  crash_step();
  fresh[1].store(0, std::memory_order_relaxed);
  return p;
}

bool finish_intent(Segment& seg, Intent& intent, std::atomic<std::uint64_t>& leaked,
                   const std::function<bool(std::uint64_t)>& reachable) {
  if (intent.op.load(std::memory_order_acquire) == 0) return false;
  const auto& h = seg.header();
  auto in_heap = [&](std::uint64_t off) { return detail::in_heap(seg, off, 16); };
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
  if (std::uint64_t a = intent.allocating.load(std::memory_order_relaxed);
      a != 0 && intent.fresh[a & 1].load(std::memory_order_relaxed) == 0) {
    leaked.fetch_add(a >> 1, std::memory_order_relaxed);
  }
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
