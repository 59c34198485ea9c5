#include "mpp/detail/list_core.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <unordered_set>

#include "mpp/detail/shm_bounds.hpp"
#include "mpp/detail/spin.hpp"
#include "mpp/errors.hpp"

namespace mpp::detail {
namespace {

enum Op : std::uint32_t {
  op_append = 1, op_extend = 2, op_set = 3, op_insert = 4, op_remove = 5, op_grow = 6, op_clear = 7,
  op_scratch = 8,  // a larger scratch block replaces the list's (in_place.hpp)
  op_assign = 9,   // an in-place copy: intent.index = the item, size_before = its length
};

std::uint64_t item_bytes(ListItem* it) { return ListItem::bytes_for(it->len); }

bool plausible_item(Segment& seg, std::uint64_t off) {
  if (!in_heap(seg, off, sizeof(ListItem))) return false;
  auto* it = seg.at<ListItem>(off);
  return it->tag == LIST_ITEM_TAG && in_heap(seg, off, ListItem::bytes_for(it->len));
}

}  // namespace

void ListCore::construct(void* mem, std::uint32_t value_enc) {
  auto* st = new (mem) ListState();
  st->value_encoding = value_enc;
}

SharedGuard ListCore::read() const {
  return SharedGuard(st_->hdr.mutex, st_->readers, [this] { const_cast<ListCore*>(this)->recover(); });
}

// A writer holds the list: poll until it is done, every pause (~15 ns; a set holds the list
// for tens of ns, a growth for longer), so the read starts at once when it ends. Bounded: a
// writer that died holding the list leaves `seq` odd, and the shared lock recovers it.
std::uint32_t ListCore::wait_until_even() const noexcept {
  std::uint32_t v = read_begin(st_->readers);
  for (int k = 0; k < 256 && (v & 1) != 0; ++k) {
    cpu_relax();
    v = read_begin(st_->readers);
  }
  return v;
}

// What peek() found implausible, as an error naming it.
void ListCore::corrupt_array() const {
  const std::uint64_t off = st_->array.load(std::memory_order_acquire);
  if (!in_heap(*seg_, off, ListArray::bytes_for(0))) corrupt("its array offset points outside the heap");
  auto* a = seg_->at<ListArray>(off);
  if (a->tag != LIST_ARRAY_TAG) corrupt("its array has a wrong tag");
  if (a->size.load(std::memory_order_acquire) > a->capacity) corrupt("its size exceeds its capacity");
  corrupt("its array's capacity does not fit the heap");
}

void ListCore::corrupt(std::string_view what) const { throw_corrupt(*seg_, st_, "list", what); }

std::uint64_t ListCore::size_locked() const {
  ListArray* a = array();
  return a ? a->size.load(std::memory_order_acquire) : 0;
}

ListItem* ListCore::item_locked(std::uint64_t i) const {
  Snapshot s;
  if (!peek(s)) corrupt_array();
  if (i >= s.size()) corrupt("an index is past its end");
  std::uint32_t len;
  ListItem* it = s.item_if_plausible(i, len);
  if (!it) corrupt("element " + std::to_string(i) + " is not a list item");
  return it;
}

ListItem* ListCore::item_at(long long i, std::uint64_t& j, std::uint64_t& n) const {
  Snapshot s;
  if (!peek(s)) corrupt_array();
  n = s.size();
  const long long k = i < 0 ? i + static_cast<long long>(n) : i;
  if (k < 0 || static_cast<std::uint64_t>(k) >= n) return nullptr;
  j = static_cast<std::uint64_t>(k);
  std::uint32_t len;
  ListItem* it = s.item_if_plausible(j, len);
  if (!it) corrupt("element " + std::to_string(j) + " is not a list item");
  return it;
}

ListItem* ListCore::build(std::span<const std::byte> v, bool pending) {
  const std::size_t bytes = ListItem::bytes_for(v.size());
  ListItem* it = pending ? static_cast<ListItem*>(st_->intent.allocate_pending(*seg_, bytes))
                         : new (st_->intent.allocate(*seg_, bytes, 0)) ListItem();
  it->len = static_cast<std::uint32_t>(v.size());
  it->tag = LIST_ITEM_TAG;
  if (!v.empty()) std::memcpy(it->data(), v.data(), v.size());
  return it;
}

void ListCore::reserve(std::uint64_t need) {
  ListArray* a = array();
  const std::uint64_t cap = a ? a->capacity : 0;
  if (need <= cap) return;
  const std::uint64_t ncap = std::max<std::uint64_t>({8, cap * 2, need});
  auto* na = new (st_->intent.allocate(*seg_, ListArray::bytes_for(ncap), 1)) ListArray();
  na->capacity = ncap;
  const std::uint64_t n = a ? a->size.load(std::memory_order_relaxed) : 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    new (&na->items[i]) std::atomic<std::uint64_t>(a->items[i].load(std::memory_order_relaxed));
  }
  na->size.store(n, std::memory_order_relaxed);
  if (a) st_->intent.retire(seg_->offset_of(a), ListArray::bytes_for(cap), 1);
  crash_step();
  st_->array.store(seg_->offset_of(na), std::memory_order_release);  // publishes
  st_->hdr.bytes.fetch_add(ListArray::bytes_for(ncap) - (a ? ListArray::bytes_for(cap) : 0),
                           std::memory_order_relaxed);
  crash_step();
  if (a) seg_->deallocate(a);
}

void ListCore::append_locked(std::span<const std::byte> v) {
  Intent& in = st_->intent;
  const std::uint64_t n = size_locked();
  in.begin(op_append);
  try {
    reserve(n + 1);
    ListItem* it = build(v, false);
    ListArray* a = array();
    crash_step();
    a->items[n].store(seg_->offset_of(it), std::memory_order_relaxed);
    crash_step();
    a->size.store(n + 1, std::memory_order_release);  // publishes
    st_->hdr.count.store(n + 1, std::memory_order_relaxed);
    st_->hdr.bytes.fetch_add(item_bytes(it), std::memory_order_relaxed);
  } catch (...) {
    in.end();
    throw;
  }
  in.end();
}

void ListCore::extend_locked(std::span<const std::span<const std::byte>> vs) {
  if (vs.empty()) return;
  Intent& in = st_->intent;
  const std::uint64_t n = size_locked();
  in.begin(op_extend);
  try {
    reserve(n + vs.size());
    for (auto it = vs.rbegin(); it != vs.rend(); ++it) build(*it, true);
  } catch (...) {
    for (std::uint64_t off = in.pending.load(); off != 0;) {
      auto* it = seg_->at<ListItem>(off);
      std::uint64_t next = it->next.load(std::memory_order_relaxed);
      in.pending.store(next, std::memory_order_relaxed);
      seg_->deallocate(it);
      off = next;
    }
    in.end();
    throw;
  }
  ListArray* a = array();
  std::uint64_t i = n, added = 0;
  for (std::uint64_t off = in.pending.load(); off != 0; ++i) {
    auto* it = seg_->at<ListItem>(off);
    crash_step();
    a->items[i].store(off, std::memory_order_relaxed);
    added += item_bytes(it);
    off = it->next.load(std::memory_order_relaxed);
  }
  crash_step();
  a->size.store(n + vs.size(), std::memory_order_release);  // publishes them all
  st_->hdr.count.store(n + vs.size(), std::memory_order_relaxed);
  st_->hdr.bytes.fetch_add(added, std::memory_order_relaxed);
  in.end();
}

// A value of the element's length is written into its item: no allocation, no free, and a
// crash at any store leaves the old element or the new one (in_place.hpp).
bool ListCore::assign_in_place(ListItem* x, std::span<const std::byte> v) {
  if (v.empty()) return true;
  if (v.size() <= 8 && (v.size() & (v.size() - 1)) == 0) {
    crash_step();
    return store_in_one(x->data(), v);
  }
  ScratchBlock* sb = scratch_for(*seg_, st_->intent, op_scratch, st_->scratch, st_->hdr.bytes, v.size(), crash_step);
  if (!sb) return false;
  assign_staged(st_->intent, op_assign, *sb, seg_->offset_of(x), x->data(), v, [] { crash_step(); });
  return true;
}

void ListCore::set_locked(std::uint64_t i, ListItem* old, std::span<const std::byte> v) {
  Intent& in = st_->intent;
  if (v.size() == old->len && assign_in_place(old, v)) return;
  in.begin(op_set);
  ListItem* it;
  try {
    it = build(v, false);
  } catch (...) {
    in.end();
    throw;
  }
  ListArray* a = array();
  in.retire(seg_->offset_of(old), item_bytes(old));
  crash_step();
  a->items[i].store(seg_->offset_of(it), std::memory_order_release);  // publishes
  st_->hdr.bytes.fetch_add(item_bytes(it) - item_bytes(old), std::memory_order_relaxed);
  crash_step();
  seg_->deallocate(old);
  in.end();
}

void ListCore::insert_locked(std::uint64_t i, std::span<const std::byte> v) {
  const std::uint64_t n = size_locked();
  if (i >= n) {
    append_locked(v);
    return;
  }
  Intent& in = st_->intent;
  ListArray* a = array();
  const std::uint64_t ncap = a->capacity > n ? a->capacity : n * 2;
  in.begin(op_insert);
  ListArray* na;
  ListItem* it;
  try {
    na = new (in.allocate(*seg_, ListArray::bytes_for(ncap), 1)) ListArray();
    it = build(v, false);
  } catch (...) {
    if (std::uint64_t f = in.fresh[1].load()) {
      crash_step();
      in.fresh[1].store(0);  // before the free: recovery must not free it again
      seg_->deallocate(seg_->at(f));
    }
    in.end();
    throw;
  }
  na->capacity = ncap;
  for (std::uint64_t j = 0, k = 0; j <= n; ++j) {
    std::uint64_t off = j == i ? seg_->offset_of(it) : a->items[k++].load(std::memory_order_relaxed);
    new (&na->items[j]) std::atomic<std::uint64_t>(off);
  }
  na->size.store(n + 1, std::memory_order_relaxed);
  in.retire(seg_->offset_of(a), ListArray::bytes_for(a->capacity), 1);
  crash_step();
  st_->array.store(seg_->offset_of(na), std::memory_order_release);  // publishes
  st_->hdr.count.store(n + 1, std::memory_order_relaxed);
  st_->hdr.bytes.fetch_add(item_bytes(it) + ListArray::bytes_for(na->capacity) -
                               ListArray::bytes_for(a->capacity),
                           std::memory_order_relaxed);
  crash_step();
  seg_->deallocate(a);
  in.end();
}

// The record (index, size before, the removed item) is complete before `op` makes it valid:
// recovery reads "items[index] is no longer the removed item" as "the shift has begun" only
// when it knows which item was removed.
void ListCore::remove_at_locked(std::uint64_t i) {
  Intent& in = st_->intent;
  ListItem* x = item_locked(i);
  ListArray* a = array();
  const std::uint64_t n = a->size.load(std::memory_order_relaxed);
  in.prepare();
  crash_step();
  in.index.store(i, std::memory_order_relaxed);
  crash_step();
  in.size_before.store(n, std::memory_order_relaxed);
  in.retire(seg_->offset_of(x), item_bytes(x));
  in.arm(op_remove);
  for (std::uint64_t j = i; j + 1 < n; ++j) {
    crash_step();
    a->items[j].store(a->items[j + 1].load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  crash_step();
  a->size.store(n - 1, std::memory_order_release);  // publishes
  st_->hdr.count.store(n - 1, std::memory_order_relaxed);
  st_->hdr.bytes.fetch_sub(item_bytes(x), std::memory_order_relaxed);
  crash_step();
  seg_->deallocate(x);
  in.end();
}

// All or nothing: one store of size = 0 empties the list; the intent record (the size
// before) lets recovery free what a crash left of items[0, size_before) afterwards. Each item
// is retired, then its slot zeroed, then freed, so none is freed twice; a crash between the
// zeroing and the free leaks that one item (counted).
void ListCore::clear_locked() {
  Intent& in = st_->intent;
  ListArray* a = array();
  const std::uint64_t n = a ? a->size.load(std::memory_order_relaxed) : 0;
  if (n == 0) return;
  for (std::uint64_t j = 0; j < n; ++j) item_locked(j);  // all valid before anything changes
  in.prepare();
  crash_step();
  in.size_before.store(n, std::memory_order_relaxed);
  in.arm(op_clear);
  crash_step();
  a->size.store(0, std::memory_order_release);  // publishes: the list is empty
  st_->hdr.count.store(0, std::memory_order_relaxed);
  for (std::uint64_t j = n; j-- > 0;) {
    const std::uint64_t off = a->items[j].load(std::memory_order_relaxed);
    auto* x = seg_->at<ListItem>(off);
    in.retire(off, item_bytes(x));
    crash_step();
    a->items[j].store(0, std::memory_order_relaxed);
    st_->hdr.bytes.fetch_sub(item_bytes(x), std::memory_order_relaxed);
    crash_step();
    seg_->deallocate(x);
  }
  in.end();
}

// The bytes the list holds besides its items: its array and its scratch block.
std::uint64_t ListCore::fixed_bytes(const ListArray* a) const noexcept {
  std::uint64_t bytes = a ? ListArray::bytes_for(a->capacity) : 0;
  if (const std::uint64_t soff = st_->scratch.load(std::memory_order_relaxed)) {
    if (const ScratchBlock* sb = scratch_if_plausible(*seg_, soff)) bytes += sizeof(ScratchBlock) + sb->capacity;
  }
  return bytes;
}

// Under the lock of a holder that died, with every reader gone. Throws SegmentError (naming
// the list) when the list is corrupt.
void ListCore::recover() {
  Intent& in = st_->intent;
  const std::uint64_t aoff = st_->array.load();
  ListArray* a = array();
  const std::uint32_t op = in.op.load();
  if (a && op == op_remove && a->size.load() == in.size_before.load()) {
    // A removal was shifting items left: finish it (or drop it if no item moved yet). The
    // record is complete (armed last), so x is the removed item.
    const std::uint64_t n = in.size_before.load(), i = in.index.load();
    const std::uint64_t x = in.old[0].load();
    if (n <= a->capacity && i < n && a->items[i].load() != x) {
      std::uint64_t j = i;
      while (j + 1 < n && a->items[j].load() != a->items[j + 1].load()) ++j;
      for (std::uint64_t m = j + 1; m + 1 < n; ++m) a->items[m].store(a->items[m + 1].load());
      a->size.store(n - 1);
      in.old[0].store(0);  // not freed yet (that comes after the size store): free it now
      if (plausible_item(*seg_, x)) seg_->deallocate(seg_->at(x));
    }
  }
  if (a && op == op_clear && a->size.load() == 0) {
    // A clear was committed: free what it had not freed yet. A slot still holding an item
    // means that item was not freed (each slot is zeroed before its item is freed).
    const std::uint64_t n = std::min<std::uint64_t>(in.size_before.load(), a->capacity);
    for (std::uint64_t j = 0; j < n; ++j) {
      const std::uint64_t off = a->items[j].load();
      if (off == 0) continue;
      a->items[j].store(0);
      if (off == in.old[0].load()) in.old[0].store(0);
      if (plausible_item(*seg_, off)) seg_->deallocate(seg_->at(off));
    }
  }
  std::unordered_set<std::uint64_t> live;
  const std::uint64_t n = a ? a->size.load() : 0;
  std::uint64_t bytes = fixed_bytes(a);
  for (std::uint64_t i = 0; i < n; ++i) {
    std::uint64_t off = a->items[i].load();
    live.insert(off);
    if (plausible_item(*seg_, off)) bytes += item_bytes(seg_->at<ListItem>(off));
  }
  if (op == op_assign) {
    // Past the commit: copy the staged value again (over what a dead writer may have half
    // copied), if the recorded item is still an element of that length.
    const std::uint64_t x = assign_target(in);
    const bool ok = live.count(x) > 0 && plausible_item(*seg_, x) && seg_->at<ListItem>(x)->len == assign_length(in);
    redo_assign(in, ok ? scratch_if_plausible(*seg_, st_->scratch.load()) : nullptr,
                ok ? seg_->at<ListItem>(x)->data() : nullptr);
  }
  const std::uint64_t soff = st_->scratch.load();
  finish_intent(*seg_, in, st_->hdr.leaked, [&](std::uint64_t off) {
    return live.count(off) > 0 || off == aoff || (off == soff && soff != 0);
  });
  st_->hdr.count.store(n);
  st_->hdr.bytes.store(bytes);
}

std::string ListCore::check() const {
  try {
    auto guard = write();
    ListArray* a = array();
    if (!a) return st_->hdr.count.load() == 0 ? std::string() : "count is not 0 for an empty list";
    const std::uint64_t n = a->size.load();
    std::unordered_set<std::uint64_t> seen;
    std::uint64_t bytes = fixed_bytes(a);
    for (std::uint64_t i = 0; i < n; ++i) {
      std::uint64_t off = a->items[i].load();
      if (!plausible_item(*seg_, off)) return "item " + std::to_string(i) + " is not an item";
      if (!seen.insert(off).second) return "item " + std::to_string(i) + " appears twice";
      bytes += item_bytes(seg_->at<ListItem>(off));
    }
    if (st_->hdr.count.load() != n) return "count does not match size";
    if (st_->hdr.bytes.load() != bytes) return "bytes do not match the items";
    if (st_->intent.op.load() != 0) return "an unfinished change was left behind";
    return {};
  } catch (const SegmentError& e) {
    return e.what();
  }
}

}  // namespace mpp::detail
