// The type-erased body of mpp::List: an array of offsets to byte blobs in a segment, written
// so that a process killed at any instruction leaves it valid. mpp::List<T> (list.hpp) puts
// the codec on top.
//
//   - the truth is ListState::array -> ListArray (capacity, size, items[]); `size` publishes:
//     an append writes items[size] first and then size+1 with one store; an extend writes all
//     new slots and then the new size with one store.
//   - a growth or an insert in the middle builds a complete new array and publishes it with
//     one store of ListState::array (copy on write), then frees the old one.
//   - a removal from the middle shifts left in place; the intent record holds the index, the
//     size before and the removed item (all stored before the record is armed), and the next
//     locker after a crash finishes the shift (the one duplicated offset shows how far it got).
//   - a clear publishes size 0 with one store, then frees the items; the record (the size
//     before) lets recovery free the rest: all or nothing.
//   - a set whose value has the element's length writes it into the element's item
//     (in_place.hpp): up to 8 bytes with one store, longer ones staged in the list's scratch
//     block and committed by the intent record, which recovery copies again from.
//   - everything else (count, bytes) is derived and recomputed on recovery.
// Readers: element reads, the size and searches (index, count, contains) read optimistically,
// validated by the shared lock's version word (shared_lock.hpp), and write nothing shared;
// views, iteration and to_vector take the shared lock. docs/design/list-reads.md has the
// reasons.
#pragma once

#include <atomic>
#include <cstring>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mpp/detail/in_place.hpp"
#include "mpp/detail/intent.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/detail/segment_format.hpp"
#include "mpp/detail/shared_lock.hpp"

namespace mpp::detail {

using ByteView = std::span<const std::byte>;

inline constexpr std::uint32_t LIST_ITEM_TAG = 0x11577EE5u;
inline constexpr std::uint64_t LIST_ARRAY_TAG = 0x4c49535441525259ULL;  // "LISTARRY"

// One element: its encoded bytes at offset 16.
struct ListItem {
  std::atomic<std::uint64_t> next{0};  // only while pending (an extend in progress)
  std::uint32_t len = 0;
  std::uint32_t tag = LIST_ITEM_TAG;
  std::byte* data() { return reinterpret_cast<std::byte*>(this) + sizeof(ListItem); }
  std::span<const std::byte> bytes() { return {data(), len}; }
  static std::size_t bytes_for(std::size_t len) { return sizeof(ListItem) + len; }
};
static_assert(sizeof(ListItem) == 16);

struct ListArray {
  std::uint64_t tag = LIST_ARRAY_TAG;
  std::uint64_t capacity = 0;
  std::atomic<std::uint64_t> size{0};  // truth: items[0, size) are the elements
  std::uint64_t reserved = 0;
  std::atomic<std::uint64_t> items[1];  // really `capacity` offsets of ListItems
  static std::size_t bytes_for(std::uint64_t capacity) { return 32 + 8 * capacity; }
};

struct ListState {
  ObjectHeader hdr;
  ReaderSlots readers;
  std::atomic<std::uint64_t> array{0};  // offset of the ListArray, 0 while never used
  Intent intent;
  std::uint32_t value_encoding = 0;     // detail::Encoding of T, for inspect
  std::uint32_t reserved = 0;
  // A ScratchBlock (0 until a set first needs one): where a value replaced in place is
  // staged, so a recovery can finish a copy a dead writer started.
  std::atomic<std::uint64_t> scratch{0};
};

// Bytes copied out of shared memory by a read pass and decoded only after the pass was
// validated (they may be torn before). Up to 16 bytes stay inline; a longer copy is a
// std::string whose size the pass has bounded by the heap.
class CopiedBytes {
 public:
  void assign(ByteView b) {
    len_ = b.size();
    if (len_ <= kSmall) {
      if (len_ != 0) std::memcpy(small_, b.data(), len_);
    } else {
      big_.assign(reinterpret_cast<const char*>(b.data()), len_);
    }
  }
  ByteView bytes() const noexcept {
    return len_ <= kSmall ? ByteView(small_, len_) : ByteView(reinterpret_cast<const std::byte*>(big_.data()), len_);
  }
  // The copy as a string, moved out when it is one already.
  std::string take_string() {
    return len_ <= kSmall ? std::string(reinterpret_cast<const char*>(small_), len_) : std::move(big_);
  }

 private:
  static constexpr std::size_t kSmall = 16;
  alignas(16) std::byte small_[kSmall];
  std::size_t len_ = 0;
  std::string big_;
};

class ListCore {
 public:
  ListCore(std::shared_ptr<Segment> seg, ListState* st) : seg_(std::move(seg)), st_(st) {}
  static void construct(void* mem, std::uint32_t value_enc);

  SharedGuard read() const;
  // The exclusive lock, its uncontended path inline (as a Dict stripe's), after any gap a
  // reader asked for (shared_lock.hpp).
  class WriteGuard {
   public:
    explicit WriteGuard(const ListCore& c) : c_(c) {
      ReaderSlots& r = c.st_->readers;
      yield_to_readers(r);
      auto rec = [&c] { const_cast<ListCore&>(c).recover(); };
      lock_exclusive_inline(c.st_->hdr.mutex, r.seq, r, RecoverRef::of(rec));
    }
    ~WriteGuard() { unlock_exclusive_inline(c_.st_->hdr.mutex, c_.st_->readers.seq); }
    WriteGuard(const WriteGuard&) = delete;
    WriteGuard& operator=(const WriteGuard&) = delete;

   private:
    const ListCore& c_;
  };
  WriteGuard write() const { return WriteGuard(*this); }

  // What one pass of a read sees: the size and each element's bytes. Every offset is
  // checked against the heap before it is followed and every length read once and checked
  // before anything is compared or copied, so a torn (or corrupt) list never makes a pass
  // read outside the heap. In an optimistic pass what it yields may be torn: it means
  // something only once the version validated.
  class Snapshot {
   public:
    std::uint64_t size() const noexcept { return n_; }
    // The bytes of element i (i < size()); false when its offset or length is implausible.
    bool item(std::uint64_t i, ByteView& out) const noexcept {
      std::uint32_t len;
      ListItem* it = item_if_plausible(i, len);
      if (!it) return bad(i);
      out = ByteView(it->data(), len);
      return true;
    }
    // Element i (i < size()) when its offset, tag and length `len` (read once) fit the
    // heap, else nullptr.
    ListItem* item_if_plausible(std::uint64_t i, std::uint32_t& len) const noexcept {
      const std::uint64_t off = a_->items[i].load(std::memory_order_acquire);
      if (off < lo_ || off % 16 != 0 || off > hi_ || hi_ - off < sizeof(ListItem)) return nullptr;
      auto* it = reinterpret_cast<ListItem*>(base_ + off);
      const std::uint32_t tag = std::atomic_ref<std::uint32_t>(it->tag).load(std::memory_order_relaxed);
      len = std::atomic_ref<std::uint32_t>(it->len).load(std::memory_order_relaxed);
      if (tag != LIST_ITEM_TAG || hi_ - off - sizeof(ListItem) < len) return nullptr;
      return it;
    }
    std::uint64_t bad_index() const noexcept { return bad_; }

   private:
    friend class ListCore;
    bool bad(std::uint64_t i) const noexcept {
      bad_ = i;
      return false;
    }
    std::byte* base_ = nullptr;
    std::uint64_t lo_ = 0, hi_ = 0;
    ListArray* a_ = nullptr;
    std::uint64_t n_ = 0;
    mutable std::uint64_t bad_ = 0;
  };

  // Runs `pass(const Snapshot&) -> bool` on a version-validated reading of the list that
  // writes nothing shared (a reader killed in it leaves nothing to recover), retried a few
  // times, and under the shared lock when writers keep interfering. `pass` may run several
  // times, on torn data that is then thrown away: it must only copy bytes out, not throw,
  // and return false when Snapshot::item said an element was implausible. The last run is
  // on consistent data. Throws SegmentError naming the list when it is corrupt.
  // A read whose first try fails asks the writers for a gap (shared_lock.hpp), so that a
  // writer in a loop cannot keep it out; that path is out of line, the first try inline.
  template <class F>
  void read_snapshot(F&& pass) const {
    const std::uint32_t v = read_begin(st_->readers);
    if ((v & 1) == 0) [[likely]] {
      Snapshot s;
      if (peek(s) && pass(static_cast<const Snapshot&>(s)) && read_valid(st_->readers, v)) [[likely]] {
        return;
      }
    }
    read_snapshot_contended(pass);
  }

  // Either lock held. Every offset read from the segment is checked before it is followed:
  // a corrupt list throws SegmentError naming it, never crashes.
  std::uint64_t size_locked() const;
  // The element at i (0 <= i < size), either lock held.
  ListItem* item_locked(std::uint64_t i) const;
  // The element at i (negative: from the end) and its index j, or nullptr when i is out of
  // range; n is the size either way. Either lock held; one check of the array.
  ListItem* item_at(long long i, std::uint64_t& j, std::uint64_t& n) const;

  // Exclusive lock held for all of these; SegmentFull leaves the list unchanged.
  void append_locked(std::span<const std::byte> v);
  void extend_locked(std::span<const std::span<const std::byte>> vs);
  void set_locked(std::uint64_t i, ListItem* old, std::span<const std::byte> v);  // old: item_at's
  void insert_locked(std::uint64_t i, std::span<const std::byte> v);  // i <= size
  void remove_at_locked(std::uint64_t i);                            // i < size
  void clear_locked();  // all or nothing, also across a SIGKILL

  // What is wrong with the list (corruption included), or empty.
  std::string check() const;
  ListState& state() const noexcept { return *st_; }
  Segment& segment() const noexcept { return *seg_; }

 private:
  static constexpr int kOptimisticTries = 4;  // after the first one
  // read_snapshot after its first try failed: a gap asked for, the tries, the shared lock.
  template <class F>
  [[gnu::noinline]] void read_snapshot_contended(F& pass) const {
    ask_for_gap(st_->readers);
    for (int t = 0; t < kOptimisticTries; ++t) {
      std::uint32_t v = read_begin(st_->readers);
      // Still odd after the wait: the writer was descheduled or died; the shared lock
      // sleeps, or recovers.
      if ((v & 1) != 0 && ((v = wait_until_even()) & 1) != 0) break;
      Snapshot s;
      // Torn, or corrupt (the locked pass says which): try again.
      if (peek(s) && pass(static_cast<const Snapshot&>(s)) && read_valid(st_->readers, v)) {
        gap_used(st_->readers);
        return;
      }
    }
    gap_used(st_->readers);
    auto g = read();
    Snapshot s;
    if (!peek(s)) corrupt_array();
    if (!pass(static_cast<const Snapshot&>(s))) {
      corrupt("element " + std::to_string(s.bad_index()) + " is not a list item");
    }
  }
  // Polls `seq` until a writer is done (even), for a few microseconds at most; the last value.
  std::uint32_t wait_until_even() const noexcept;
  // Fills `s` from the list's array without throwing: false when the array's offset, tag,
  // capacity or size is implausible (torn or corrupt).
  bool peek(Snapshot& s) const noexcept {
    const auto* h = seg_->at<SegmentHeader>(0);
    s.base_ = static_cast<std::byte*>(seg_->at(0));
    s.lo_ = h->heap_offset;
    s.hi_ = s.lo_ + h->heap_size.load(std::memory_order_relaxed);
    const std::uint64_t off = st_->array.load(std::memory_order_acquire);
    if (off == 0) return true;  // never used: empty
    if (off < s.lo_ || off % 16 != 0 || off > s.hi_ || s.hi_ - off < ListArray::bytes_for(0)) return false;
    auto* a = reinterpret_cast<ListArray*>(s.base_ + off);
    const std::uint64_t tag = std::atomic_ref<std::uint64_t>(a->tag).load(std::memory_order_relaxed);
    const std::uint64_t cap = std::atomic_ref<std::uint64_t>(a->capacity).load(std::memory_order_relaxed);
    const std::uint64_t n = a->size.load(std::memory_order_acquire);
    if (tag != LIST_ARRAY_TAG || cap > (s.hi_ - off - ListArray::bytes_for(0)) / 8 || n > cap) return false;
    s.a_ = a;
    s.n_ = n;
    return true;
  }
  // The array, checked as an optimistic reader checks it (SegmentError naming what is
  // wrong when corrupt); nullptr while never used.
  ListArray* array() const {
    Snapshot s;
    if (!peek(s)) corrupt_array();
    return s.a_;
  }
  [[noreturn]] void corrupt_array() const;
  [[noreturn]] void corrupt(std::string_view what) const;
  ListItem* build(std::span<const std::byte> v, bool pending);
  // Writes v (of x's length) into x, crash-safe; false when no scratch block fits.
  bool assign_in_place(ListItem* x, std::span<const std::byte> v);
  std::uint64_t fixed_bytes(const ListArray* a) const noexcept;  // array + scratch block
  void reserve(std::uint64_t need);  // grows by copy-on-write if needed
  void recover();

  std::shared_ptr<Segment> seg_;
  ListState* st_;
};

}  // namespace mpp::detail
