#include "mpp/detail/dict_core.hpp"

#include <new>
#include <unordered_set>
#include <vector>

#include "mpp/errors.hpp"

namespace mpp::detail {
namespace {

enum Op : std::uint32_t { op_set = 1, op_erase = 2, op_set_many = 3, op_clear = 4, op_grow = 5 };

constexpr std::uint64_t kInitialBuckets = 16;

std::uint64_t node_bytes(const DictNode* n) { return DictNode::bytes_for(n->key_len, n->value_len); }

// Stores `v` (1, 2, 4 or 8 bytes) into `dst` with one aligned store, so that a reader after
// a crash sees the old value or the new one, never a mix.
bool store_in_one(std::byte* dst, Bytes v) noexcept {
  switch (v.size()) {
    case 1: std::atomic_ref<std::uint8_t>(*reinterpret_cast<std::uint8_t*>(dst)).store(static_cast<std::uint8_t>(v[0]), std::memory_order_relaxed); return true;
    case 2: { std::uint16_t x; std::memcpy(&x, v.data(), 2); std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(dst)).store(x, std::memory_order_relaxed); return true; }
    case 4: { std::uint32_t x; std::memcpy(&x, v.data(), 4); std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(dst)).store(x, std::memory_order_relaxed); return true; }
    case 8: { std::uint64_t x; std::memcpy(&x, v.data(), 8); std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(dst)).store(x, std::memory_order_relaxed); return true; }
    default: return false;
  }
}

}  // namespace

void DictCore::construct(Segment& seg, void* mem, std::uint32_t key_enc, std::uint32_t value_enc) {
  auto* st = new (mem) DictState();
  st->key_encoding = key_enc;
  st->value_encoding = value_enc;
  void* b = seg.allocate(BucketArray::bytes_for(kInitialBuckets));
  auto* ba = static_cast<BucketArray*>(b);
  ba->n = kInitialBuckets;
  for (std::uint64_t i = 0; i < kInitialBuckets; ++i) new (&ba->slot[i]) std::atomic<std::uint64_t>(0);
  st->buckets.store(seg.offset_of(b));
  st->hdr.bytes.store(BucketArray::bytes_for(kInitialBuckets));
}

SharedGuard DictCore::read() const {
  return SharedGuard(st_->hdr.mutex, st_->readers, [this] { const_cast<DictCore*>(this)->recover(); });
}

ExclusiveGuard DictCore::write() const {
  return ExclusiveGuard(st_->hdr.mutex, st_->readers, [this] { const_cast<DictCore*>(this)->recover(); });
}

DictNode* DictCore::find_locked(Bytes key, std::uint64_t hash) const noexcept {
  BucketArray& b = buckets();
  std::uint64_t off = b.slot[hash & (b.n - 1)].load(std::memory_order_relaxed);
  while (off != 0) {
    DictNode* n = node(off);
    if (n->hash == hash && n->key_len == key.size() &&
        (key.empty() || std::memcmp(n->key_data(), key.data(), key.size()) == 0)) {
      return n;
    }
    off = n->bnext;
  }
  return nullptr;
}

DictNode* DictCore::build(Bytes key, std::uint64_t hash, Bytes value, bool pending) {
  const std::size_t bytes = DictNode::bytes_for(key.size(), value.size());
  DictNode* n;
  if (pending) {
    // `next` already links the pending chain: every other field is set by hand.
    n = static_cast<DictNode*>(st_->intent.allocate_pending(*seg_, bytes));
  } else {
    n = new (st_->intent.allocate(*seg_, bytes, 0)) DictNode();
  }
  n->prev = 0;
  n->bnext = 0;
  n->hash = hash;
  n->key_len = static_cast<std::uint32_t>(key.size());
  n->value_len = static_cast<std::uint32_t>(value.size());
  n->tag = DICT_NODE_TAG;
  n->reserved = 0;
  if (!key.empty()) std::memcpy(n->key_data(), key.data(), key.size());
  if (!value.empty()) std::memcpy(n->value_data(), value.data(), value.size());
  return n;
}

void DictCore::publish(DictNode* n) {
  const std::uint64_t off = seg_->offset_of(n);
  BucketArray& b = buckets();
  auto& slot = b.slot[n->hash & (b.n - 1)];
  if (DictNode* x = find_locked(n->key(), n->hash)) {
    const std::uint64_t xoff = seg_->offset_of(x);
    n->next.store(x->next.load(std::memory_order_relaxed), std::memory_order_relaxed);
    st_->intent.retire(xoff, node_bytes(x));
    if (x->prev) {
      node(x->prev)->next.store(off, std::memory_order_release);  // publishes
    } else {
      st_->head.store(off, std::memory_order_release);  // publishes
    }
    n->prev = x->prev;
    if (std::uint64_t nx = n->next.load(std::memory_order_relaxed)) {
      node(nx)->prev = off;
    } else {
      st_->tail = off;
    }
    n->bnext = x->bnext;
    if (slot.load(std::memory_order_relaxed) == xoff) {
      slot.store(off, std::memory_order_relaxed);
    } else {
      DictNode* p = node(slot.load(std::memory_order_relaxed));
      while (p->bnext != xoff) p = node(p->bnext);
      p->bnext = off;
    }
    st_->hdr.bytes.fetch_add(node_bytes(n) - node_bytes(x), std::memory_order_relaxed);
    seg_->deallocate(x);
  } else {
    n->next.store(0, std::memory_order_relaxed);
    n->prev = st_->tail;
    if (st_->tail) {
      node(st_->tail)->next.store(off, std::memory_order_release);  // publishes
    } else {
      st_->head.store(off, std::memory_order_release);  // publishes
    }
    st_->tail = off;
    n->bnext = slot.load(std::memory_order_relaxed);
    slot.store(off, std::memory_order_relaxed);
    st_->hdr.count.fetch_add(1, std::memory_order_relaxed);
    st_->hdr.bytes.fetch_add(node_bytes(n), std::memory_order_relaxed);
  }
}

void DictCore::set_locked(Bytes key, std::uint64_t hash, Bytes value) {
  if (DictNode* x = find_locked(key, hash)) {
    assign_locked(x, value);
    return;
  }
  st_->intent.begin(op_set);
  try {
    publish(build(key, hash, value, false));
  } catch (...) {
    st_->intent.end();  // SegmentFull from build: nothing was allocated or changed
    throw;
  }
  st_->intent.end();
  grow_index();
}

void DictCore::assign_locked(DictNode* x, Bytes value) {
  if (value.size() == x->value_len && store_in_one(x->value_data(), value)) return;
  st_->intent.begin(op_set);
  try {
    publish(build(x->key(), x->hash, value, false));
  } catch (...) {
    st_->intent.end();
    throw;
  }
  st_->intent.end();
}

void DictCore::erase_locked(DictNode* x) noexcept {
  const std::uint64_t xoff = seg_->offset_of(x);
  st_->intent.begin(op_erase);
  st_->intent.retire(xoff, node_bytes(x));
  const std::uint64_t nx = x->next.load(std::memory_order_relaxed);
  if (x->prev) {
    node(x->prev)->next.store(nx, std::memory_order_release);  // unlinks
  } else {
    st_->head.store(nx, std::memory_order_release);  // unlinks
  }
  if (nx) {
    node(nx)->prev = x->prev;
  } else {
    st_->tail = x->prev;
  }
  BucketArray& b = buckets();
  auto& slot = b.slot[x->hash & (b.n - 1)];
  if (slot.load(std::memory_order_relaxed) == xoff) {
    slot.store(x->bnext, std::memory_order_relaxed);
  } else {
    DictNode* p = node(slot.load(std::memory_order_relaxed));
    while (p->bnext != xoff) p = node(p->bnext);
    p->bnext = x->bnext;
  }
  st_->hdr.count.fetch_sub(1, std::memory_order_relaxed);
  st_->hdr.bytes.fetch_sub(node_bytes(x), std::memory_order_relaxed);
  seg_->deallocate(x);
  st_->intent.end();
}

void DictCore::set_many_locked(std::span<const std::pair<Bytes, Bytes>> pairs) {
  if (pairs.empty()) return;
  Intent& in = st_->intent;
  in.begin(op_set_many);
  // Allocate everything first, last pair first, so the pending chain starts at the first.
  try {
    for (auto it = pairs.rbegin(); it != pairs.rend(); ++it) {
      build(it->first, hash_bytes(it->first), it->second, true);
    }
  } catch (...) {
    for (std::uint64_t off = in.pending.load(); off != 0;) {
      std::uint64_t next = node(off)->next.load(std::memory_order_relaxed);
      in.pending.store(next, std::memory_order_relaxed);
      seg_->deallocate(node(off));
      off = next;
    }
    in.end();
    throw;
  }
  // Publish in order (a later duplicate key replaces an earlier one, as in Python).
  while (std::uint64_t off = in.pending.load(std::memory_order_relaxed)) {
    DictNode* n = node(off);
    in.fresh[0].store(off, std::memory_order_relaxed);
    in.pending.store(n->next.load(std::memory_order_relaxed), std::memory_order_relaxed);
    in.old[0].store(0, std::memory_order_relaxed);
    publish(n);
  }
  in.end();
  grow_index();
}

void DictCore::clear_locked() noexcept {
  st_->intent.begin(op_clear);
  BucketArray& b = buckets();
  for (std::uint64_t i = 0; i < b.n; ++i) b.slot[i].store(0, std::memory_order_relaxed);
  while (std::uint64_t off = st_->head.load(std::memory_order_relaxed)) {
    DictNode* x = node(off);
    st_->intent.retire(off, node_bytes(x));
    st_->head.store(x->next.load(std::memory_order_relaxed), std::memory_order_release);
    seg_->deallocate(x);
  }
  st_->tail = 0;
  st_->hdr.count.store(0, std::memory_order_relaxed);
  st_->hdr.bytes.store(BucketArray::bytes_for(b.n), std::memory_order_relaxed);
  st_->intent.end();
}

void DictCore::grow_index() noexcept {
  BucketArray& old = buckets();
  if (size() <= old.n || old.n >= (1ULL << 40)) return;
  const std::uint64_t n = old.n * 2;
  st_->intent.begin(op_grow);
  BucketArray* nb;
  try {
    nb = static_cast<BucketArray*>(st_->intent.allocate(*seg_, BucketArray::bytes_for(n), 0));
  } catch (...) {
    st_->intent.end();  // no room for a bigger index: chains get longer, nothing breaks
    return;
  }
  nb->n = n;
  for (std::uint64_t i = 0; i < n; ++i) new (&nb->slot[i]) std::atomic<std::uint64_t>(0);
  for (std::uint64_t off = st_->head.load(std::memory_order_relaxed); off != 0;) {
    DictNode* x = node(off);
    auto& slot = nb->slot[x->hash & (n - 1)];
    x->bnext = slot.load(std::memory_order_relaxed);
    slot.store(off, std::memory_order_relaxed);
    off = x->next.load(std::memory_order_relaxed);
  }
  const std::uint64_t old_off = st_->buckets.load(std::memory_order_relaxed);
  st_->intent.retire(old_off, BucketArray::bytes_for(old.n));
  st_->buckets.store(seg_->offset_of(nb), std::memory_order_release);  // publishes
  st_->hdr.bytes.fetch_add(BucketArray::bytes_for(n) - BucketArray::bytes_for(old.n),
                           std::memory_order_relaxed);
  seg_->deallocate(&old);
  st_->intent.end();
}

void DictCore::for_each_locked(const std::function<bool(DictNode&)>& fn) const {
  for (std::uint64_t off = st_->head.load(std::memory_order_acquire); off != 0;) {
    DictNode* n = node(off);
    if (!fn(*n)) return;
    off = n->next.load(std::memory_order_acquire);
  }
}

namespace {

// Whether `off` can be a node of `seg`: inside the heap, aligned, tagged, not running off it.
bool plausible_node(Segment& seg, std::uint64_t off) {
  const auto& h = seg.header();
  const std::uint64_t lo = h.heap_offset, hi = h.heap_offset + h.heap_size;
  if (off < lo || off % 16 != 0 || off + sizeof(DictNode) > hi) return false;
  auto* n = seg.at<DictNode>(off);
  return n->tag == DICT_NODE_TAG && off + DictNode::bytes_for(n->key_len, n->value_len) <= hi;
}

}  // namespace

// Under the lock of a writer that died, with every reader gone: keep the truth (cut at the
// first link that cannot be a node, which the one-store protocol never produces), settle
// the intent, rebuild everything derived.
void DictCore::recover() {
  const auto& h = seg_->header();
  std::unordered_set<std::uint64_t> live;
  std::uint64_t steps = h.heap_size / sizeof(DictNode) + 1;
  std::atomic<std::uint64_t>* link = &st_->head;
  for (std::uint64_t off = link->load(); off != 0; off = link->load()) {
    if (!plausible_node(*seg_, off) || live.count(off) || steps-- == 0) {
      link->store(0);  // never happens with the protocol; cutting beats following garbage
      break;
    }
    live.insert(off);
    link = &node(off)->next;
  }
  const std::uint64_t boff = st_->buckets.load();
  auto* b = seg_->at<BucketArray>(boff);
  if (boff < h.heap_offset || boff >= h.heap_offset + h.heap_size || b->n == 0 ||
      (b->n & (b->n - 1)) != 0 || boff + BucketArray::bytes_for(b->n) > h.heap_offset + h.heap_size) {
    throw SegmentError("a dict's bucket index is corrupt; the dict cannot be recovered");
  }
  finish_intent(*seg_, st_->intent, st_->hdr.leaked,
                [&](std::uint64_t off) { return live.count(off) > 0 || off == boff; });
  for (std::uint64_t i = 0; i < b->n; ++i) b->slot[i].store(0, std::memory_order_relaxed);
  std::uint64_t prev = 0, count = 0, bytes = BucketArray::bytes_for(b->n);
  for (std::uint64_t off = st_->head.load(); off != 0;) {
    DictNode* x = node(off);
    x->prev = prev;
    auto& slot = b->slot[x->hash & (b->n - 1)];
    x->bnext = slot.load(std::memory_order_relaxed);
    slot.store(off, std::memory_order_relaxed);
    ++count;
    bytes += node_bytes(x);
    prev = off;
    off = x->next.load();
  }
  st_->tail = prev;
  st_->hdr.count.store(count);
  st_->hdr.bytes.store(bytes);
}

std::string DictCore::check() const {
  auto guard = write();
  const auto& h = seg_->header();
  std::unordered_set<std::uint64_t> live;
  std::uint64_t prev = 0;
  std::uint64_t steps = h.heap_size / sizeof(DictNode) + 1;
  for (std::uint64_t off = st_->head.load(); off != 0; off = node(off)->next.load()) {
    if (!plausible_node(*seg_, off)) return "a link points at something that is not a node";
    if (live.count(off) || steps-- == 0) return "the node list has a cycle";
    DictNode* x = node(off);
    if (x->prev != prev) return "a node's prev link is wrong";
    if (x->hash != hash_bytes(x->key())) return "a node's hash does not match its key";
    if (find_locked(x->key(), x->hash) != x) return "a node is missing from its bucket (or its key is duplicated)";
    live.insert(off);
    prev = off;
  }
  if (st_->tail != prev) return "the tail is not the last node";
  if (live.size() != st_->hdr.count.load()) {
    return "the count (" + std::to_string(st_->hdr.count.load()) + ") is not the number of nodes (" +
           std::to_string(live.size()) + ")";
  }
  BucketArray& b = buckets();
  std::uint64_t indexed = 0;
  for (std::uint64_t i = 0; i < b.n; ++i) {
    for (std::uint64_t off = b.slot[i].load(); off != 0; off = node(off)->bnext) {
      if (!live.count(off)) return "the bucket index holds a node that is not in the dict";
      if ((node(off)->hash & (b.n - 1)) != i) return "a node is in the wrong bucket";
      if (++indexed > live.size()) return "a bucket chain has a cycle";
    }
  }
  if (indexed != live.size()) return "the bucket index does not hold every node";
  if (st_->intent.op.load() != 0) return "an unfinished change was left behind";
  return {};
}

}  // namespace mpp::detail
