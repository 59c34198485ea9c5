#include "mpp/detail/dict_core.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <unordered_set>
#include <vector>

#include "mpp/detail/spin.hpp"
#include "mpp/errors.hpp"

namespace mpp::detail {
namespace {

enum Op : std::uint32_t {
  op_set = 1, op_erase = 2, op_set_many = 3, op_clear = 4, op_grow = 5, op_scratch = 6,
  op_assign = 7,  // an in-place copy: intent.index = the node, size_before = its value length
};

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

void DictCore::optimistic_pause() noexcept {
  for (int i = 0; i < 64; ++i) cpu_relax();
}

std::string DictCore::name() const {
  const auto& h = seg_->header();
  const std::uint64_t self = seg_->offset_of(st_);
  const std::uint64_t end = h.directory_offset + std::uint64_t{h.directory_capacity} * sizeof(DirectoryEntry);
  if (h.directory_entry_bytes == sizeof(DirectoryEntry) && end <= h.heap_offset) {
    for (std::uint32_t i = 0; i < h.directory_capacity; ++i) {
      const auto* e = seg_->at<DirectoryEntry>(h.directory_offset + i * sizeof(DirectoryEntry));
      if (e->object_offset == self) {
        return "dict '" + std::string(e->name, strnlen(e->name, sizeof e->name)) + "'";
      }
    }
  }
  return "the dict at offset " + std::to_string(self);
}

void DictCore::corrupt(const std::string& what) const {
  throw SegmentError(name() + " is corrupt (" + what +
                     "); its segment was damaged outside mpp: recreate it or restore it");
}



DictNode* DictCore::node(std::uint64_t off) const {
  DictNode* n = node_if_plausible(off);
  if (!n) corrupt("a link points at offset " + std::to_string(off) + ", which is not a node");
  return n;
}


BucketArray& DictCore::buckets() const {
  BucketArray* b = buckets_if_plausible();
  if (!b) corrupt("its bucket index is not a bucket array");
  return *b;
}


DictNode* DictCore::find_locked(Bytes key, std::uint64_t hash) const {
  DictNode* n;
  if (!probe(key, hash, n)) {
    (void)buckets();
    corrupt("a bucket chain has a link that is not a node, or a cycle");
  }
  return n;
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
  dict_step();
  return n;
}

// Points the bucket link that leads to `xoff` (the slot or a chain node's bnext) at `to`.
void DictCore::relink_bucket(std::atomic<std::uint64_t>& slot, std::uint64_t xoff, std::uint64_t to) {
  if (slot.load(std::memory_order_relaxed) == xoff) {
    slot.store(to, std::memory_order_release);
    return;
  }
  DictNode* p = node(slot.load(std::memory_order_relaxed));
  for (std::uint64_t steps = max_steps(); p->bnext != xoff; p = node(p->bnext)) {
    if (--steps == 0) corrupt("a bucket chain has a cycle");
  }
  p->bnext = to;
}

// Every link store below is one aligned store: the truth (head / next) changes in one step,
// the derived fields after it are rebuilt by a recovery if the writer dies in between.
void DictCore::append(DictNode* n) {
  const std::uint64_t off = seg_->offset_of(n);
  BucketArray& b = buckets();
  auto& slot = b.slot[n->hash & (b.n - 1)];
  n->next.store(0, std::memory_order_relaxed);
  n->prev = st_->tail;
  n->bnext = slot.load(std::memory_order_relaxed);
  dict_step();
  if (st_->tail) {
    node(st_->tail)->next.store(off, std::memory_order_release);  // publishes
  } else {
    st_->head.store(off, std::memory_order_release);  // publishes
  }
  dict_step();
  st_->tail = off;
  slot.store(off, std::memory_order_release);
  dict_step();
  st_->hdr.count.fetch_add(1, std::memory_order_relaxed);
  st_->hdr.bytes.fetch_add(node_bytes(n), std::memory_order_relaxed);
}

void DictCore::replace(DictNode* x, DictNode* n) {
  const std::uint64_t off = seg_->offset_of(n), xoff = seg_->offset_of(x);
  BucketArray& b = buckets();
  auto& slot = b.slot[n->hash & (b.n - 1)];
  n->next.store(x->next.load(std::memory_order_relaxed), std::memory_order_relaxed);
  n->prev = x->prev;
  n->bnext = x->bnext;
  st_->intent.retire(xoff, node_bytes(x));
  dict_step();
  if (x->prev) {
    node(x->prev)->next.store(off, std::memory_order_release);  // publishes
  } else {
    st_->head.store(off, std::memory_order_release);  // publishes
  }
  dict_step();
  if (std::uint64_t nx = n->next.load(std::memory_order_relaxed)) {
    node(nx)->prev = off;
  } else {
    st_->tail = off;
  }
  relink_bucket(slot, xoff, off);
  dict_step();
  st_->hdr.bytes.fetch_add(node_bytes(n) - node_bytes(x), std::memory_order_relaxed);
  seg_->deallocate(x);
  dict_step();
}

void DictCore::publish(DictNode* n) {
  if (DictNode* x = find_locked(n->key(), n->hash)) {
    replace(x, n);
  } else {
    append(n);
  }
}

void DictCore::set_locked(Bytes key, std::uint64_t hash, Bytes value) {
  if (DictNode* x = find_locked(key, hash)) {
    assign_locked(x, value);
    return;
  }
  st_->intent.begin(op_set);
  dict_step();
  try {
    append(build(key, hash, value, false));
  } catch (...) {
    st_->intent.end();  // SegmentFull from build: nothing was allocated or changed
    throw;
  }
  dict_step();
  st_->intent.end();
  grow_index();
}

std::uint64_t DictCore::fixed_bytes(const BucketArray& b) const noexcept {
  const ScratchBlock* sb = scratch_if_plausible();
  return BucketArray::bytes_for(b.n) + (sb ? sizeof(ScratchBlock) + sb->capacity : 0);
}

ScratchBlock* DictCore::scratch_if_plausible() const noexcept {
  const Heap h = heap();
  const std::uint64_t off = st_->scratch.load(std::memory_order_relaxed);
  if (off < h.lo || off % 16 != 0 || off > h.hi || h.hi - off < sizeof(ScratchBlock)) return nullptr;
  auto* b = seg_->at<ScratchBlock>(off);
  return b->capacity <= h.hi - off - sizeof(ScratchBlock) ? b : nullptr;
}

ScratchBlock* DictCore::scratch_for(std::uint64_t bytes) noexcept {
  ScratchBlock* cur = st_->scratch.load(std::memory_order_relaxed) ? scratch_if_plausible() : nullptr;
  if (cur && cur->capacity >= bytes) return cur;
  const std::uint64_t cap = std::max<std::uint64_t>(256, (bytes + 255) / 256 * 256);
  Intent& in = st_->intent;
  in.begin(op_scratch);
  ScratchBlock* nb;
  try {
    nb = static_cast<ScratchBlock*>(in.allocate(*seg_, sizeof(ScratchBlock) + cap, 0));
  } catch (...) {
    in.end();
    return nullptr;  // no room: the caller replaces the node instead
  }
  nb->capacity = cap;
  nb->reserved = 0;
  dict_step();
  const std::uint64_t old_off = st_->scratch.load(std::memory_order_relaxed);
  if (cur) in.retire(old_off, sizeof(ScratchBlock) + cur->capacity);
  dict_step();
  st_->scratch.store(seg_->offset_of(nb), std::memory_order_release);  // publishes
  dict_step();
  st_->hdr.bytes.fetch_add(sizeof(ScratchBlock) + cap - (cur ? sizeof(ScratchBlock) + cur->capacity : 0),
                           std::memory_order_relaxed);
  if (cur) seg_->deallocate(cur);
  dict_step();
  in.end();
  return nb;
}

// A value of the old one's length replaces it in the node: staged in the scratch block, the
// intent says which node gets it, then the copy; a recovery repeats the copy from the
// scratch block, so the node ends with the old bytes (killed before the intent) or the new.
bool DictCore::assign_in_place(DictNode* x, Bytes value) {
  ScratchBlock* sb = scratch_for(value.size());
  if (!sb) return false;
  std::memcpy(sb->data(), value.data(), value.size());
  dict_step();
  Intent& in = st_->intent;
  in.begin(op_assign);
  in.size_before.store(value.size(), std::memory_order_relaxed);
  in.index.store(seg_->offset_of(x), std::memory_order_release);  // commits
  dict_step();
  // In two halves with a step between, so the store-by-store test also kills a half copy.
  const std::size_t half = value.size() / 2;
  std::memcpy(x->value_data(), sb->data(), half);
  dict_step();
  std::memcpy(x->value_data() + half, sb->data() + half, value.size() - half);
  dict_step();
  in.end();
  return true;
}

void DictCore::assign_locked(DictNode* x, Bytes value) {
  if (value.size() == x->value_len && store_in_one(x->value_data(), value)) {
    dict_step();
    return;
  }
  if (value.size() == x->value_len && assign_in_place(x, value)) return;
  st_->intent.begin(op_set);
  dict_step();
  try {
    replace(x, build(x->key(), x->hash, value, false));
  } catch (...) {
    st_->intent.end();
    throw;
  }
  st_->intent.end();
}

void DictCore::erase_locked(DictNode* x) {
  const std::uint64_t xoff = seg_->offset_of(x);
  const std::uint64_t nx = x->next.load(std::memory_order_relaxed);
  DictNode* prev = x->prev ? node(x->prev) : nullptr;
  DictNode* next = nx ? node(nx) : nullptr;
  st_->intent.begin(op_erase);
  st_->intent.retire(xoff, node_bytes(x));
  dict_step();
  if (prev) {
    prev->next.store(nx, std::memory_order_release);  // unlinks
  } else {
    st_->head.store(nx, std::memory_order_release);  // unlinks
  }
  dict_step();
  if (next) {
    next->prev = x->prev;
  } else {
    st_->tail = x->prev;
  }
  BucketArray& b = buckets();
  auto& slot = b.slot[x->hash & (b.n - 1)];
  relink_bucket(slot, xoff, x->bnext);
  dict_step();
  st_->hdr.count.fetch_sub(1, std::memory_order_relaxed);
  st_->hdr.bytes.fetch_sub(node_bytes(x), std::memory_order_relaxed);
  seg_->deallocate(x);
  dict_step();
  st_->intent.end();
}

// Intent.index of op_set_many: 0 while the nodes are being built (a crash undoes them all),
// kCommitted once they all are (a crash is rolled forward by the recovery).
constexpr std::uint64_t kCommitted = 1;

void DictCore::set_many_locked(std::span<const std::pair<Bytes, Bytes>> pairs) {
  if (pairs.empty()) return;
  Intent& in = st_->intent;
  in.begin(op_set_many);
  dict_step();
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
  in.index.store(kCommitted, std::memory_order_release);  // commits: all pairs will be set
  dict_step();
  publish_pending();
  in.end();
  grow_index();
}

// Publishes the pending chain in order (a later duplicate key replaces an earlier one, as in
// Python). The chain head is always unpublished: it is taken off the chain (recorded in
// fresh[0] first) before it is linked, so a recovery can run this loop again from where a
// dead writer stopped.
void DictCore::publish_pending() {
  Intent& in = st_->intent;
  while (std::uint64_t off = in.pending.load(std::memory_order_relaxed)) {
    DictNode* n = node(off);
    in.fresh[0].store(off, std::memory_order_relaxed);
    dict_step();
    in.pending.store(n->next.load(std::memory_order_relaxed), std::memory_order_relaxed);
    dict_step();
    in.old[0].store(0, std::memory_order_relaxed);
    dict_step();
    publish(n);
  }
}

void DictCore::clear_locked() {
  Intent& in = st_->intent;
  in.begin(op_clear);
  // The list becomes the chain of blocks to free (linked through `next`, as the pending
  // chain is), then one store empties the dict.
  in.pending.store(st_->head.load(std::memory_order_relaxed), std::memory_order_relaxed);
  dict_step();
  st_->head.store(0, std::memory_order_release);  // commits
  dict_step();
  st_->tail = 0;
  BucketArray& b = buckets();
  for (std::uint64_t i = 0; i < b.n; ++i) b.slot[i].store(0, std::memory_order_relaxed);
  st_->hdr.count.store(0, std::memory_order_relaxed);
  st_->hdr.bytes.store(fixed_bytes(b), std::memory_order_relaxed);
  dict_step();
  for (std::uint64_t steps = max_steps(); std::uint64_t off = in.pending.load(std::memory_order_relaxed);) {
    DictNode* x = node(off);
    if (--steps == 0) corrupt("the node list has a cycle");
    in.retire(off, node_bytes(x));
    dict_step();
    in.pending.store(x->next.load(std::memory_order_relaxed), std::memory_order_relaxed);
    dict_step();
    seg_->deallocate(x);
    dict_step();
  }
  in.end();
}

void DictCore::grow_index() noexcept {
  BucketArray* oldp = buckets_if_plausible();
  if (!oldp) return;  // corrupt: the next locked operation says so
  BucketArray& old = *oldp;
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
  dict_step();
  nb->n = n;
  for (std::uint64_t i = 0; i < n; ++i) new (&nb->slot[i]) std::atomic<std::uint64_t>(0);
  std::uint64_t steps = max_steps();
  for (std::uint64_t off = st_->head.load(std::memory_order_relaxed); off != 0;) {
    DictNode* x = node_if_plausible(off);
    if (!x || --steps == 0) {  // corrupt: keep the old index, give the new one back
      seg_->deallocate(nb);
      st_->intent.end();
      return;
    }
    auto& slot = nb->slot[x->hash & (n - 1)];
    x->bnext = slot.load(std::memory_order_relaxed);
    slot.store(off, std::memory_order_relaxed);
    off = x->next.load(std::memory_order_relaxed);
  }
  dict_step();
  const std::uint64_t old_off = st_->buckets.load(std::memory_order_relaxed);
  st_->intent.retire(old_off, BucketArray::bytes_for(old.n));
  dict_step();
  st_->buckets.store(seg_->offset_of(nb), std::memory_order_release);  // publishes
  dict_step();
  st_->hdr.bytes.fetch_add(BucketArray::bytes_for(n) - BucketArray::bytes_for(old.n),
                           std::memory_order_relaxed);
  seg_->deallocate(&old);
  dict_step();
  st_->intent.end();
}

void DictCore::for_each_locked(const std::function<bool(DictNode&)>& fn) const {
  std::uint64_t steps = max_steps();
  for (std::uint64_t off = st_->head.load(std::memory_order_acquire); off != 0;) {
    if (--steps == 0) corrupt("the node list has a cycle");
    DictNode* n = node(off);
    if (!fn(*n)) return;
    off = n->next.load(std::memory_order_acquire);
  }
}

void DictCore::rebuild_derived(const BucketArray& cb) {
  auto& b = const_cast<BucketArray&>(cb);
  for (std::uint64_t i = 0; i < b.n; ++i) b.slot[i].store(0, std::memory_order_relaxed);
  std::uint64_t prev = 0, count = 0, bytes = fixed_bytes(b);
  for (std::uint64_t off = st_->head.load(); off != 0;) {
    DictNode* x = node(off);
    x->prev = prev;
    auto& slot = b.slot[x->hash & (b.n - 1)];
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

// Under the lock of a writer that died, with every reader gone: keep the truth (cut at the
// first link that cannot be a node, which the one-store protocol never produces), rebuild
// everything derived, then settle the intent: a committed update is rolled forward, any
// other change's unpublished blocks are freed.
void DictCore::recover() {
  std::unordered_set<std::uint64_t> live;
  std::uint64_t steps = max_steps();
  std::atomic<std::uint64_t>* link = &st_->head;
  for (std::uint64_t off = link->load(); off != 0; off = link->load()) {
    if (!node_if_plausible(off) || live.count(off) || steps-- == 0) {
      link->store(0);  // never happens with the protocol; cutting beats following garbage
      break;
    }
    live.insert(off);
    link = &node(off)->next;
  }
  const BucketArray& b = buckets();
  const std::uint64_t boff = st_->buckets.load();
  rebuild_derived(b);
  Intent& in = st_->intent;
  if (in.op.load() == op_set_many && in.index.load() == kCommitted) {
    // Past the commit: finish the dead writer's update. The block it was unlinking, if any,
    // is leaked (it may have been freed); the node it had taken off the chain is linked
    // unless it already was; then the rest of the chain, as the writer would have.
    if (std::uint64_t o = in.old[0].load(); o != 0 && !live.count(o)) {
      st_->hdr.leaked.fetch_add(in.old_bytes[0].load(), std::memory_order_relaxed);
    }
    in.old[0].store(0);
    const std::uint64_t f = in.fresh[0].load();
    if (f != 0 && f != in.pending.load() && !live.count(f)) {
      if (DictNode* n = node_if_plausible(f)) publish(n);
    }
    in.fresh[0].store(0);
    publish_pending();
    in.end();
    return;
  }
  if (in.op.load() == op_assign) {
    // Past the commit: copy the staged value again (over the bytes a dead writer may have
    // half copied), if the recorded node is still the live one of that length.
    const std::uint64_t xoff = in.index.load();
    DictNode* x = xoff != 0 && live.count(xoff) ? node_if_plausible(xoff) : nullptr;
    ScratchBlock* sb = scratch_if_plausible();
    const std::uint64_t len = in.size_before.load();
    if (x && sb && x->value_len == len && len <= sb->capacity) std::memcpy(x->value_data(), sb->data(), len);
    in.end();
    return;
  }
  const std::uint64_t soff = st_->scratch.load();
  finish_intent(*seg_, in, st_->hdr.leaked, [&](std::uint64_t off) {
    return live.count(off) > 0 || off == boff || (off == soff && soff != 0);
  });
}

std::string DictCore::check() const {
  try {
    auto guard = write();
    std::unordered_set<std::uint64_t> live;
    std::uint64_t prev = 0;
    std::uint64_t steps = max_steps();
    for (std::uint64_t off = st_->head.load(); off != 0;) {
      DictNode* x = node_if_plausible(off);
      if (!x) return "a link points at offset " + std::to_string(off) + ", which is not a node";
      if (live.count(off) || steps-- == 0) return "the node list has a cycle";
      if (x->prev != prev) return "a node's prev link is wrong";
      if (x->hash != hash_bytes(x->key())) return "a node's hash does not match its key";
      if (find_locked(x->key(), x->hash) != x) return "a node is missing from its bucket (or its key is duplicated)";
      live.insert(off);
      prev = off;
      off = x->next.load();
    }
    if (st_->tail != prev) return "the tail is not the last node";
    if (live.size() != st_->hdr.count.load()) {
      return "the count (" + std::to_string(st_->hdr.count.load()) + ") is not the number of nodes (" +
             std::to_string(live.size()) + ")";
    }
    BucketArray& b = buckets();
    std::uint64_t indexed = 0;
    for (std::uint64_t i = 0; i < b.n; ++i) {
      for (std::uint64_t off = b.slot[i].load(); off != 0; off = seg_->at<DictNode>(off)->bnext) {
        if (!live.count(off)) return "the bucket index holds a node that is not in the dict";
        if ((seg_->at<DictNode>(off)->hash & (b.n - 1)) != i) return "a node is in the wrong bucket";
        if (++indexed > live.size()) return "a bucket chain has a cycle";
      }
    }
    if (indexed != live.size()) return "the bucket index does not hold every node";
    if (st_->intent.op.load() != 0) return "an unfinished change was left behind";
    return {};
  } catch (const SegmentError& e) {
    return e.what();
  }
}

}  // namespace mpp::detail
