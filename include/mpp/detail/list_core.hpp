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
//   - everything else (count, bytes) is derived and recomputed on recovery.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mpp/detail/intent.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/detail/segment_format.hpp"
#include "mpp/detail/shared_lock.hpp"

namespace mpp::detail {

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
};

class ListCore {
 public:
  ListCore(std::shared_ptr<Segment> seg, ListState* st) : seg_(std::move(seg)), st_(st) {}
  static void construct(void* mem, std::uint32_t value_enc);

  SharedGuard read() const;
  ExclusiveGuard write() const;

  // Either lock held. Every offset read from the segment is checked before it is followed:
  // a corrupt list throws SegmentError naming it, never crashes.
  std::uint64_t size_locked() const;
  // The element at i (0 <= i < size), either lock held.
  ListItem* item_locked(std::uint64_t i) const;

  // Exclusive lock held for all of these; SegmentFull leaves the list unchanged.
  void append_locked(std::span<const std::byte> v);
  void extend_locked(std::span<const std::span<const std::byte>> vs);
  void set_locked(std::uint64_t i, std::span<const std::byte> v);
  void insert_locked(std::uint64_t i, std::span<const std::byte> v);  // i <= size
  void remove_at_locked(std::uint64_t i);                            // i < size
  void clear_locked();  // all or nothing, also across a SIGKILL

  // What is wrong with the list (corruption included), or empty.
  std::string check() const;
  ListState& state() const noexcept { return *st_; }
  Segment& segment() const noexcept { return *seg_; }

 private:
  ListArray* array() const;  // checked (SegmentError when corrupt); nullptr while never used
  [[noreturn]] void corrupt(std::string_view what) const;
  ListItem* build(std::span<const std::byte> v, bool pending);
  void reserve(std::uint64_t need);  // grows by copy-on-write if needed
  void recover();

  std::shared_ptr<Segment> seg_;
  ListState* st_;
};

}  // namespace mpp::detail
