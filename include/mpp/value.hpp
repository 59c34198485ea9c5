// mpp::Value<T>: one value of a trivially copyable type in shared memory, with the RLock
// that guards it: Python's multiprocessing.Value(typecode, init) (whose lock is an RLock).
//
//   mpp::Value<long> counter(0);            // standalone, shared with children forked later
//   counter.fetch_add(1);                   // atomic add, any number of processes
//   { auto g = counter.get_lock().guard();  // Python: with counter.get_lock():
//     counter.set_value(counter.value() * 2); }
//
// value(), set_value() and fetch_add() take the lock, as Python's `.value` does, so they
// are atomic with respect to each other and to code holding get_lock(). The lock is
// recursive: calling them while holding get_lock() is fine.
//
// fetch_add is "under the lock" by design, not a bare hardware atomic: a bare atomic would
// not wait for a process holding get_lock(), and `with v.get_lock(): v.value += 1` in one
// process would then lose another's increments. Where T is lock-free (integers, pointers'
// size and smaller, double), atomic_ref() gives the bare hardware atomic on the same bytes,
// like Python's RawValue: faster under contention, atomic only with respect to other
// atomic operations (and value()/set_value()/fetch_add(), which use atomic loads and stores
// for such T), not to get_lock() sections.
//
// After a crash: a process killed at any instruction inside set_value() leaves the old or
// the new value, never a mix of both (lock-free T is stored with one atomic store; larger T
// is written to a second slot and published with one store of the slot's index). A killed
// holder of get_lock() is recovered by the next locker (see sync.hpp); what the program
// wrote under that lock is its own business.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>

#include "mpp/detail/sync_state.hpp"
#include "mpp/sync.hpp"
#include "mpp/repr.hpp"  // repr(v) and operator<<

namespace mpp {

namespace detail {

template <class T>
constexpr bool lock_free_value() {
  if constexpr (std::is_trivially_copyable_v<T>) {
    return std::atomic_ref<T>::is_always_lock_free;
  } else {
    return false;
  }
}

template <class T>
constexpr std::size_t value_alignment() {
  if constexpr (lock_free_value<T>()) {
    return std::atomic_ref<T>::required_alignment;
  } else {
    return alignof(T);
  }
}

// Arithmetic that Value and Array can add to: numbers, but not bool.
template <class T>
concept Addable = std::is_arithmetic_v<T> && !std::is_same_v<T, bool>;

// a + b, wrapping around for integers as std::atomic's fetch_add does (no signed overflow).
template <Addable T>
T wrapping_add(T a, T b) noexcept {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
  } else {
    return a + b;
  }
}

template <Addable T>
T wrapping_negate(T a) noexcept {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(U{0} - static_cast<U>(a)));
  } else {
    return -a;
  }
}

// A Value's state: the header (whose recursive mutex is the Value's RLock) and the value, in
// one slot when T is lock-free, else in two slots of which `current` names the live one.
template <class T>
struct ValueState {
  static_assert(std::is_trivially_copyable_v<T>, "mpp::Value<T> needs a trivially copyable T");
  static constexpr bool kAtomic = lock_free_value<T>();
  static constexpr std::size_t kSlots = kAtomic ? 1 : 2;

  ObjectHeader header{RobustMutex::Kind::recursive};
  std::atomic<std::uint32_t> current{0};
  alignas(value_alignment<T>()) std::byte storage[kSlots * sizeof(T)];

  explicit ValueState(const T& init) {
    for (std::size_t i = 0; i < kSlots; ++i) ::new (storage + i * sizeof(T)) T(init);
    header.count.store(1, std::memory_order_relaxed);
  }

  T* slot(std::uint32_t i) noexcept {
    return std::launder(reinterpret_cast<T*>(storage + i * sizeof(T)));
  }

  // Under the mutex.
  T load() noexcept {
    if constexpr (kAtomic) {
      return std::atomic_ref<T>(*slot(0)).load();
    } else {
      // `current` is 0 or 1; masked, a corrupt word still names one of the two slots.
      return *slot(current.load(std::memory_order_relaxed) & 1u);
    }
  }
  void store(const T& v) noexcept {
    if constexpr (kAtomic) {
      std::atomic_ref<T>(*slot(0)).store(v);
    } else {
      const std::uint32_t next = 1u - (current.load(std::memory_order_relaxed) & 1u);
      std::memcpy(static_cast<void*>(slot(next)), &v, sizeof(T));
      current.store(next, std::memory_order_release);  // the one store that publishes it
    }
  }
};

}  // namespace detail

// Python's multiprocessing.Value: one T in shared memory and the RLock that guards it. A
// cheap, copyable handle (it keeps the memory mapped).
template <class T>
class Value {
  static_assert(std::is_trivially_copyable_v<T>,
                "mpp::Value<T> needs a trivially copyable T: it lives as raw bytes in shared "
                "memory. For std::string or other types, use a Manager's dict or list.");
  static_assert(!std::is_pointer_v<T> && !std::is_member_pointer_v<T>,
                "mpp::Value<T> cannot hold a pointer: an address means nothing in another "
                "process. Store an index or an offset instead.");

 public:
  // The layout in shared memory.
  using State = detail::ValueState<T>;

  // A new Value holding `init` (T{} by default), in its own anonymous shared memory, shared
  // with children forked after it. Throws OSError when the memory cannot be mapped.
  Value()
    requires std::is_default_constructible_v<T>
      : Value(T{}) {}
  explicit Value(const T& init) {
    auto [state, segment] = detail::make_standalone<State>(init);
    state_ = state;
    segment_ = std::move(segment);
  }

  // The value (Python: `v.value`), read under the lock.
  T value() const {
    detail::RobustLockGuard hold(state_->header.mutex);
    return state_->load();
  }

  // Replaces the value (Python: `v.value = x`), under the lock.
  void set_value(const T& v) {
    detail::RobustLockGuard hold(state_->header.mutex);
    state_->store(v);
  }

  // The recursive lock guarding the value (Python: get_lock()).
  RLock get_lock() const noexcept { return detail::Access::make<RLock>(&state_->header, segment_); }

  // Adds `delta` under the lock and returns the previous value; integers wrap around as
  // std::atomic's do. Exact however many processes add at once.
  T fetch_add(T delta)
    requires detail::Addable<T>
  {
    detail::RobustLockGuard hold(state_->header.mutex);
    T old = state_->load();
    state_->store(detail::wrapping_add(old, delta));
    return old;
  }
  T fetch_sub(T delta)
    requires detail::Addable<T>
  {
    return fetch_add(detail::wrapping_negate(delta));
  }

  // The bare hardware atomic on the value's bytes (lock-free T only), bypassing the lock:
  // see the top of this file for what that does and does not synchronise with.
  std::atomic_ref<T> atomic_ref() const noexcept
    requires(State::kAtomic)
  {
    return std::atomic_ref<T>(*state_->slot(0));
  }

 private:
  friend struct detail::Access;
  // The Value whose state is `state`, in `segment` (which this handle keeps mapped).
  Value(State* state, std::shared_ptr<detail::Segment> segment) noexcept
      : state_(state), segment_(std::move(segment)) {}
  // The shared state, for diagnostics and tests.
  State* state() const noexcept { return state_; }

  State* state_ = nullptr;
  std::shared_ptr<detail::Segment> segment_;
};

}  // namespace mpp
