// mpp::Array<T>: a fixed number of trivially copyable elements in shared memory, with the
// RLock that guards them: Python's multiprocessing.Array(typecode, size_or_initializer).
//
//   mpp::Array<double> a(1000);          // zero-filled, shared with children forked later
//   std::span<double> s = a.span();      // straight into shared memory: no copy, no lock
//   { auto g = a.get_lock().guard(); std::ranges::fill(s, 1.0); }
//   a.set(-1, 2.5);                      // locked, bounds-checked, Python's negative index
//
// Two ways in, on purpose: get(), set(), snapshot(), assign() and fetch_add() take the lock
// (Python's synchronized Array); span(), begin()/end() and operator[] are plain memory, for
// speed, synchronised by the program (with get_lock(), or by its own partitioning).
//
// After a crash: the size never changes, so the Array is always usable. A process killed
// inside set() or assign() may leave the element(s) it was writing partly written; a killed
// holder of get_lock() is recovered by the next locker (see sync.hpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "mpp/detail/sync_state.hpp"
#include "mpp/errors.hpp"
#include "mpp/sync.hpp"
#include "mpp/value.hpp"
#include "mpp/repr.hpp"  // repr(a) and operator<<

namespace mpp {

namespace detail {

// An Array's state: the header (whose recursive mutex is the Array's RLock), the size, and
// the elements right after it.
template <class T>
struct ArrayState {
  ObjectHeader header{RobustMutex::Kind::recursive};
  std::uint64_t size;

  static constexpr std::size_t kDataOffset =
      (sizeof(ObjectHeader) + sizeof(std::uint64_t) + alignof(T) - 1) / alignof(T) * alignof(T);
  static constexpr std::size_t kAlign = std::max(alignof(ObjectHeader), alignof(T));

  // Bytes for an Array of n; throws ValueError when that does not fit in a size_t.
  static std::size_t bytes_for(std::size_t n) {
    if (n > (SIZE_MAX - kDataOffset - kAlign) / sizeof(T)) {
      throw ValueError("an Array of " + std::to_string(n) + " elements of " +
                       std::to_string(sizeof(T)) + " bytes is too large");
    }
    return std::max(sizeof(ArrayState), kDataOffset + n * sizeof(T));
  }

  // Value-initialises (zero-fills) n elements, or copies them from `init` if it is given.
  ArrayState(std::size_t n, const T* init) : size(n) {
    T* first = raw();
    if (init) {
      std::uninitialized_copy_n(init, n, first);
    } else {
      std::uninitialized_value_construct_n(first, n);
    }
    header.count.store(n, std::memory_order_relaxed);
    header.bytes.store(bytes_for(n), std::memory_order_relaxed);
  }

  T* data() noexcept { return std::launder(raw()); }

 private:
  T* raw() noexcept {
    return reinterpret_cast<T*>(reinterpret_cast<std::byte*>(this) + kDataOffset);
  }
};

}  // namespace detail

// Python's multiprocessing.Array: n elements of T in shared memory and the RLock that guards
// them. A cheap, copyable handle (it keeps the memory mapped).
template <class T>
class Array {
  static_assert(std::is_trivially_copyable_v<T>,
                "mpp::Array<T> needs a trivially copyable T: it lives as raw bytes in shared "
                "memory. For std::string or other types, use a Manager's list.");
  static_assert(!std::is_pointer_v<T> && !std::is_member_pointer_v<T>,
                "mpp::Array<T> cannot hold pointers: an address means nothing in another "
                "process. Store indexes or offsets instead.");

 public:
  // The layout in shared memory.
  using State = detail::ArrayState<T>;
  // The element type and the iterator of the elements (std::span's), as a container's.
  using value_type = T;
  using iterator = typename std::span<T>::iterator;

  // A new Array of n value-initialised (zero) elements, in its own anonymous shared memory,
  // shared with children forked after it. Throws ValueError when n is absurdly large, OSError
  // when the memory cannot be mapped.
  explicit Array(std::size_t n)
    requires std::is_default_constructible_v<T>
      : Array(make(n, nullptr)) {}
  // A new Array holding a copy of `init` (Python: Array(typecode, initializer)).
  explicit Array(std::span<const T> init) : Array(make(init.size(), init.data())) {}
  Array(std::initializer_list<T> init) : Array(make(init.size(), std::data(init))) {}

  // The number of elements (Python: len(a)); fixed at creation.
  std::size_t size() const noexcept { return static_cast<std::size_t>(state_->size); }

  // The elements, straight in shared memory: no copy and no lock.
  std::span<T> span() const noexcept { return {state_->data(), size()}; }
  iterator begin() const noexcept { return span().begin(); }
  iterator end() const noexcept { return span().end(); }

  // The element at index i (negative: from the end, as in Python), in shared memory, without
  // the lock. Throws IndexError when i is out of range.
  T& operator[](std::ptrdiff_t i) const { return state_->data()[index(i)]; }

  // The element at index i (negative as in Python), read under the lock. Throws IndexError.
  T get(std::ptrdiff_t i) const {
    auto k = index(i);
    detail::RobustLockGuard hold(state_->header.mutex);
    return state_->data()[k];
  }

  // Replaces the element at index i (negative as in Python) under the lock. Throws IndexError.
  void set(std::ptrdiff_t i, const T& v) {
    auto k = index(i);
    detail::RobustLockGuard hold(state_->header.mutex);
    state_->data()[k] = v;
  }

  // Adds `delta` to element i under the lock; returns the previous value (integers wrap).
  T fetch_add(std::ptrdiff_t i, T delta)
    requires detail::Addable<T>
  {
    auto k = index(i);
    detail::RobustLockGuard hold(state_->header.mutex);
    T old = state_->data()[k];
    state_->data()[k] = detail::wrapping_add(old, delta);
    return old;
  }

  // A copy of all elements, taken under the lock (Python: a[:]).
  std::vector<T> snapshot() const {
    detail::RobustLockGuard hold(state_->header.mutex);
    auto s = span();
    return {s.begin(), s.end()};
  }

  // Replaces all elements under the lock (Python: a[:] = values). Throws ValueError when
  // `values` has another size; the Array is then unchanged.
  void assign(std::span<const T> values) {
    if (values.size() != size()) {
      throw ValueError("Array.assign(): " + std::to_string(values.size()) +
                       " values for an Array of " + std::to_string(size()));
    }
    detail::RobustLockGuard hold(state_->header.mutex);
    if (!values.empty()) std::memmove(static_cast<void*>(state_->data()), values.data(), values.size_bytes());
  }

  // The recursive lock guarding the elements (Python: get_lock()).
  RLock get_lock() const noexcept { return detail::Access::make<RLock>(&state_->header, segment_); }

 private:
  friend struct detail::Access;
  // The Array whose state is `state`, in `segment` (which this handle keeps mapped).
  Array(State* state, std::shared_ptr<detail::Segment> segment) noexcept
      : state_(state), segment_(std::move(segment)) {}
  // The shared state, for diagnostics and tests.
  State* state() const noexcept { return state_; }

  explicit Array(std::pair<State*, std::shared_ptr<detail::Segment>> made) noexcept
      : state_(made.first), segment_(std::move(made.second)) {}

  static std::pair<State*, std::shared_ptr<detail::Segment>> make(std::size_t n, const T* init) {
    auto [memory, segment] = detail::standalone_memory(State::bytes_for(n), State::kAlign);
    return {::new (memory) State(n, init), std::move(segment)};
  }

  std::size_t index(std::ptrdiff_t i) const {
    auto n = static_cast<std::ptrdiff_t>(size());
    std::ptrdiff_t k = i < 0 ? i + n : i;
    if (k < 0 || k >= n) {
      throw IndexError("Array index " + std::to_string(i) + " out of range for an Array of " +
                       std::to_string(n));
    }
    return static_cast<std::size_t>(k);
  }

  State* state_;
  std::shared_ptr<detail::Segment> segment_;
};

}  // namespace mpp
