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

constexpr std::uint64_t kInitialBuckets = kDictStripes;  // every stripe owns a bucket

std::uint64_t node_bytes(const DictNode* n) { return DictNode::bytes_for(n->key_len, n->value_len, n->rooms); }

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

DictCore::AllGuard::AllGuard(const DictCore& c) : c_(c) {
  try {
    for (; held_ < kDictStripes; ++held_) {
      DictStripe& s = c.st_->stripes[held_];
      auto rec = [&c, &s] { const_cast<DictCore&>(c).recover_stripe(s); };
      lock_exclusive(s.mutex, s.seq, c.st_->readers, RecoverRef::of(rec));
    }
    c.lock_list();
    list_ = true;
  } catch (...) {
    release();
    throw;
  }
}

DictCore::AllGuard::~AllGuard() { release(); }

void DictCore::AllGuard::release() noexcept {
  if (list_) c_.unlock_list();
  list_ = false;
  while (held_ > 0) {
    DictStripe& s = c_.st_->stripes[--held_];
    unlock_exclusive(s.mutex, s.seq);
  }
}

// Claim a reader slot, then check that no stripe has a writer (a stripe's writer locks its
// mutex, then looks at the readers' mask: one of the two sees the other). When a writer
// is about, or every slot is taken: every stripe's mutex, in order, then a slot.
DictCore::SharedGuard::SharedGuard(const DictCore& c) : c_(&c), slot_(-1) {
  ReaderSlots& r = c.st_->readers;
  auto writer_about = [&c] {
    for (DictStripe& s : c.st_->stripes) {
      if (writer_present(s.mutex, s.seq)) return true;
    }
    return false;
  };
  if (!writer_about()) {
    slot_ = claim_reader_slot(r);
    if (slot_ >= 0) {
      if (!writer_about()) {
        track_reading(r, 1);
        return;
      }
      release_reader_slot(r, slot_);
      slot_ = -1;
    }
  }
  std::uint64_t held = 0;
  try {
    for (; held < kDictStripes; ++held) {
      DictStripe& s = c.st_->stripes[held];
      auto rec = [&c, &s] { const_cast<DictCore&>(c).recover_stripe(s); };
      lock_writer_mutex(s.mutex, s.seq, r, RecoverRef::of(rec));
      mark_not_writing(s.seq);  // a dead writer's stripe is repaired; nobody writes now
    }
  } catch (...) {
    while (held > 0) c.st_->stripes[--held].mutex.unlock();
    throw;
  }
  slot_ = claim_reader_slot(r);
  if (slot_ < 0) {
    reap_dead_reader_slots(r);
    slot_ = claim_reader_slot(r);
  }
  if (slot_ >= 0) {
    while (held > 0) c.st_->stripes[--held].mutex.unlock();
  }
  track_reading(r, 1);
}

DictCore::SharedGuard::~SharedGuard() {
  if (!c_) return;
  ReaderSlots& r = c_->st_->readers;
  track_reading(r, -1);
  if (slot_ >= 0) {
    release_reader_slot(r, slot_);
    return;
  }
  for (std::uint64_t i = kDictStripes; i > 0; --i) {
    try {
      c_->st_->stripes[i - 1].mutex.unlock();
    } catch (...) {
    }
  }
}

void DictCore::lock_list() const {
  st_->hdr.mutex.lock([this] { const_cast<DictCore*>(this)->recover_list(); });
}

void DictCore::unlock_list() const noexcept {
  try {
    st_->hdr.mutex.unlock();
  } catch (...) {
  }
}

DictCore::ListGuard::ListGuard(const DictCore& c) : c_(c) { c.lock_list(); }
DictCore::ListGuard::~ListGuard() { c_.unlock_list(); }

std::uint64_t DictCore::recoveries() const noexcept {
  std::uint64_t n = st_->hdr.mutex.recoveries();
  for (const DictStripe& s : st_->stripes) n += s.mutex.recoveries();
  return n;
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


DictNode* DictCore::find_out_of_line(Bytes key, std::uint64_t hash) const { return find_locked(key, hash); }

void DictCore::corrupt_chain() const {
  (void)buckets();
  corrupt("a bucket chain has a link that is not a node, or a cycle");
}

void DictCore::corrupt_value() const {
  corrupt("a node's value runs past the heap, or its rooms word is not one mpp writes");
}

DictNode* DictCore::build(Intent& in, Bytes key, std::uint64_t hash, Bytes value, bool pending) {
  const std::uint32_t rooms = DictNode::spare_for(value.size()) ? DictNode::kSpare : 0;
  const std::size_t bytes = DictNode::bytes_for(key.size(), value.size(), rooms);
  DictNode* n;
  if (pending) {
    // `next` already links the pending chain: every other field is set by hand.
    n = static_cast<DictNode*>(in.allocate_pending(*seg_, bytes));
  } else {
    n = new (in.allocate(*seg_, bytes, 0)) DictNode();
  }
  n->prev = 0;
  n->bnext = 0;
  n->hash = hash;
  n->key_len = static_cast<std::uint32_t>(key.size());
  n->value_len = static_cast<std::uint32_t>(value.size());
  n->tag = DICT_NODE_TAG;
  n->rooms = rooms;
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

void DictCore::replace(Intent& in, DictNode* x, DictNode* n) {
  const std::uint64_t off = seg_->offset_of(n), xoff = seg_->offset_of(x);
  BucketArray& b = buckets();
  auto& slot = b.slot[n->hash & (b.n - 1)];
  n->next.store(x->next.load(std::memory_order_relaxed), std::memory_order_relaxed);
  n->prev = x->prev;
  n->bnext = x->bnext;
  in.retire(xoff, node_bytes(x));
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

void DictCore::publish(Intent& in, DictNode* n) {
  if (DictNode* x = find_locked(n->key(), n->hash)) {
    replace(in, x, n);
  } else {
    append(n);
  }
}

bool DictCore::insert_locked(Bytes key, std::uint64_t hash, Bytes value) {
  Intent& in = stripe(hash).intent;
  in.begin(op_set);
  dict_step();
  DictNode* n;
  try {
    n = build(in, key, hash, value, false);
  } catch (...) {
    in.end();  // SegmentFull from build: nothing was allocated or changed
    throw;
  }
  {
    ListGuard list(*this);
    append(n);
  }
  dict_step();
  in.end();
  return true;
}

std::uint64_t DictCore::fixed_bytes(const BucketArray& b) const noexcept {
  std::uint64_t bytes = BucketArray::bytes_for(b.n);
  for (const DictStripe& s : st_->stripes) {
    if (const ScratchBlock* sb = scratch_if_plausible(s)) bytes += sizeof(ScratchBlock) + sb->capacity;
  }
  return bytes;
}

// The staged copy (the header says why each store is where it is).
bool DictCore::assign_in_place(DictStripe& s, DictNode* x, Bytes value) {
  ScratchBlock* sb = scratch_if_plausible(s);
  if (!sb || sb->capacity < value.size()) [[unlikely]] {
    sb = scratch_for(*seg_, s.intent, op_scratch, s.scratch, st_->hdr.bytes, value.size(), dict_step);
    if (!sb) return false;  // no room: the caller replaces the node instead
  }
  assign_staged(s.intent, op_assign, *sb, seg_->offset_of(x), x->value_data(), value, [] { dict_step(); });
  return true;
}

void DictCore::replace_value(DictNode* x, Bytes value) {
  Intent& in = stripe(x->hash).intent;
  in.begin(op_set);
  dict_step();
  DictNode* n;
  try {
    n = build(in, x->key(), x->hash, value, false);
  } catch (...) {
    in.end();
    throw;
  }
  {
    ListGuard list(*this);
    replace(in, x, n);
  }
  in.end();
}

void DictCore::erase_locked(DictNode* x) {
  Intent& in = stripe(x->hash).intent;
  ListGuard list(*this);
  const std::uint64_t xoff = seg_->offset_of(x);
  const std::uint64_t nx = x->next.load(std::memory_order_relaxed);
  DictNode* prev = x->prev ? node(x->prev) : nullptr;
  DictNode* next = nx ? node(nx) : nullptr;
  in.begin(op_erase);
  in.retire(xoff, node_bytes(x));
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
  in.end();
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
      build(in, it->first, hash_bytes(it->first), it->second, true);
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
  grow_index();  // every stripe is held
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
    publish(in, n);
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

void DictCore::grow() {
  AllGuard all(*this);
  grow_index();
}

// Every stripe and the list lock are held.
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

std::unordered_set<std::uint64_t> DictCore::live_nodes() {
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
  return live;
}

void DictCore::rebuild_buckets(std::uint64_t s) {
  BucketArray& b = buckets();
  const bool all = s == kDictStripes;
  for (std::uint64_t i = all ? 0 : s; i < b.n; i += all ? 1 : kDictStripes) {
    b.slot[i].store(0, std::memory_order_relaxed);
  }
  for (std::uint64_t off = st_->head.load(); off != 0;) {
    DictNode* x = node(off);
    if (all || (x->hash & (kDictStripes - 1)) == s) {
      auto& slot = b.slot[x->hash & (b.n - 1)];
      x->bnext = slot.load(std::memory_order_relaxed);
      slot.store(off, std::memory_order_relaxed);
    }
    off = x->next.load();
  }
}

// Under the list lock of a writer that died: keep the truth (cut at the first link that
// cannot be a node, which the one-store protocol never produces) and rebuild what derives
// from it. If the dead writer held the whole dict (its `intent` is set), every stripe is
// still held by it: the whole bucket index is rebuilt and the change settled (a committed
// update rolled forward, any other change's unpublished blocks freed); each stripe's own
// recovery, later, rebuilds its chains again from the settled list.
void DictCore::recover_list() {
  std::unordered_set<std::uint64_t> live = live_nodes();
  const BucketArray& b = buckets();
  std::uint64_t prev = 0, count = 0, bytes = fixed_bytes(b);
  for (std::uint64_t off = st_->head.load(); off != 0;) {
    DictNode* x = node(off);
    x->prev = prev;
    ++count;
    bytes += node_bytes(x);
    prev = off;
    off = x->next.load();
  }
  st_->tail = prev;
  st_->hdr.count.store(count);
  st_->hdr.bytes.store(bytes);
  Intent& in = st_->intent;
  if (in.op.load() == 0) return;
  rebuild_buckets(kDictStripes);
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
      if (DictNode* n = node_if_plausible(f)) publish(in, n);
    }
    in.fresh[0].store(0);
    publish_pending();
    in.end();
    return;
  }
  const std::uint64_t boff = st_->buckets.load();
  finish_intent(*seg_, in, st_->hdr.leaked, [&](std::uint64_t off) { return live.count(off) > 0 || off == boff; });
}

// Under the stripe lock of a writer that died, with every reader gone: under the list lock
// (which recovers the list first if the writer died holding it too), refill the stripe's
// bucket chains from the list and settle its intent.
void DictCore::recover_stripe(DictStripe& s) {
  ListGuard list(*this);
  std::unordered_set<std::uint64_t> live = live_nodes();
  rebuild_buckets(stripe_index(s));
  Intent& in = s.intent;
  if (in.op.load() == op_assign) {
    // Past the commit: copy the staged value again (over the bytes a dead writer may have
    // half copied), if the recorded node is still the live one of that length.
    const std::uint64_t xoff = assign_target(in);
    DictNode* x = xoff != 0 && live.count(xoff) ? node_if_plausible(xoff) : nullptr;
    const bool ok = x && x->value_len == assign_length(in);
    redo_assign(in, ok ? scratch_if_plausible(s) : nullptr, ok ? x->value_data() : nullptr);
    return;
  }
  const std::uint64_t soff = s.scratch.load();
  finish_intent(*seg_, in, st_->hdr.leaked, [&](std::uint64_t off) {
    return live.count(off) > 0 || (off == soff && soff != 0);
  });
}

std::string DictCore::check() const {
  try {
    AllGuard guard(*this);
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
    for (const DictStripe& s : st_->stripes) {
      if (s.intent.op.load() != 0) return "an unfinished change was left behind in a stripe";
    }
    return {};
  } catch (const SegmentError& e) {
    return e.what();
  }
}

}  // namespace mpp::detail
