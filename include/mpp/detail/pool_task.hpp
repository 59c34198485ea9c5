// How a Pool task travels: the frame formats between the parent, the spawner and the
// workers, and the trampolines that let a worker call a callable it has only as bytes.
//
// A task frame is   TaskHeader | callable bytes | input
// a result frame is ResultHeader | payload
// Both travel as records, u32 size | frame, several to a queue message: a task batch goes
// to a worker as one message, and a worker sends the results of a batch as one message.
// where input is a chunk: u64 count, then `count` argument packs, and an ok payload is the
// `count` results. Each value goes through the one codec (codec.hpp): a trivially encoded
// value as its own sizeof(T) bytes, anything else as u32 length + codec bytes.
//
// The callable is the bytes of a trivially copyable object (a function pointer, or a lambda
// capturing trivially copyable values) and the trampoline is a function pointer: both are
// valid in a worker because it is a fork of the parent, running the same program image at
// the same addresses (the spawner is forked from the parent, the workers from it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "mpp/detail/codec.hpp"
#include "mpp/errors.hpp"

namespace mpp::detail {

// Runs every argument pack of `input` through the callable at `callable` and appends the
// encoded results to `output`. Throws whatever the callable throws, DecodeError on bad input.
using Trampoline = void (*)(const std::byte* callable, ByteView input, std::string& output);

struct TaskHeader {
  std::uint64_t task_id;
  Trampoline trampoline;
  std::uint32_t callable_size;
  std::uint32_t reserved;
};

enum class ResultKind : std::uint32_t {
  ok = 1,           // payload: the results
  error = 2,        // payload: u32 type name length, type name, message
  died = 3,         // from the spawner: a worker ended (pid, status)
  init_failed = 4,  // the initializer threw in a worker; payload as error
  quit = 5,         // from the parent to its own result thread: stop
};

struct ResultHeader {
  std::uint64_t task_id;
  ResultKind kind;
  std::uint32_t slot;
  std::int32_t pid;
  std::int32_t status;  // died: the raw wait status; ok/error: the task's run time in ns
                        // (saturated), which sizes the parent's batches
};

inline void append_raw(std::string& out, const void* p, std::size_t n) {
  out.append(static_cast<const char*>(p), n);
}

// A bounds-checked cursor over received bytes.
class Reader {
 public:
  explicit Reader(ByteView b) : p_(b.data()), end_(b.data() + b.size()) {}
  ByteView take(std::size_t n) {
    if (static_cast<std::size_t>(end_ - p_) < n) {
      throw DecodeError("a pool message is truncated: needed " + std::to_string(n) +
                        " more bytes, " + std::to_string(end_ - p_) + " left");
    }
    ByteView v(p_, n);
    p_ += n;
    return v;
  }
  template <class T>
  T take_raw() {
    T v;
    std::memcpy(&v, take(sizeof(T)).data(), sizeof(T));
    return v;
  }
  bool done() const { return p_ == end_; }

 private:
  const std::byte* p_;
  const std::byte* end_;
};

template <class T>
void put_value(std::string& out, const T& v) {
  Encoded e = encode(v);
  if constexpr (!TriviallyEncoded<T>) {
    auto n = static_cast<std::uint32_t>(e.size());
    append_raw(out, &n, sizeof n);
  }
  append_raw(out, e.bytes().data(), e.size());
}

template <class T>
T take_value(Reader& r) {
  if constexpr (TriviallyEncoded<T>) {
    return decode<T>(r.take(sizeof(T)));
  } else {
    auto n = r.take_raw<std::uint32_t>();
    return decode<T>(r.take(n));
  }
}

// The types a Pool stores for an argument: decayed, with C strings as std::string (a
// pointer means nothing in another process).
template <class A>
using StoredArg = std::conditional_t<std::is_convertible_v<std::decay_t<A>, const char*>, std::string,
                                     std::decay_t<A>>;

// Appends one argument pack.
template <class... S>
void put_pack(std::string& out, const S&... args) {
  (put_value(out, args), ...);
}

template <class F, class... S>
using PackResult = std::decay_t<std::invoke_result_t<F&, S&&...>>;

template <class F, class... S>
void run_chunk(const std::byte* callable, ByteView input, std::string& output) {
  // F is trivially copyable (checked where the task is made), so its bytes are an F.
  alignas(F) unsigned char storage[sizeof(F)];
  if constexpr (!std::is_empty_v<F>) std::memcpy(storage, callable, sizeof(F));
  F& f = *std::launder(reinterpret_cast<F*>(storage));
  Reader r(input);
  auto count = r.take_raw<std::uint64_t>();
  using R = PackResult<F, S...>;
  if constexpr (sizeof...(S) == 1 && (TriviallyEncoded<S> && ...) && TriviallyEncoded<R>) {
    // The common map of plain values: fixed-size items in, fixed-size results out.
    using T = std::tuple_element_t<0, std::tuple<S...>>;
    if (input.size() - sizeof count != count * sizeof(T)) {
      throw DecodeError("a pool chunk of " + std::to_string(count) + " items has " +
                        std::to_string(input.size() - sizeof count) + " bytes");
    }
    const std::byte* in = input.data() + sizeof count;
    const std::size_t base = output.size();
    output.resize(base + count * sizeof(R));
    for (std::uint64_t i = 0; i < count; ++i) {
      T x;
      std::memcpy(&x, in + i * sizeof(T), sizeof(T));
      R y = f(std::move(x));
      std::memcpy(output.data() + base + i * sizeof(R), &y, sizeof(R));
    }
    return;
  }
  for (std::uint64_t i = 0; i < count; ++i) {
    std::tuple<S...> args{take_value<S>(r)...};  // braced: evaluated left to right
    if constexpr (std::is_void_v<R>) {
      std::apply(f, std::move(args));
    } else {
      put_value<R>(output, std::apply(f, std::move(args)));
    }
  }
}

// Starts a task record for callable `f`: room for the record's size, then the frame's
// header (size and task id filled in by the pool) and the callable's bytes.
// `frame` may be a buffer to reuse (its contents are replaced).
template <class F, class... S>
std::string begin_task(const F& f, std::uint64_t count, std::string frame = {}) {
  frame.assign(sizeof(std::uint32_t), '\0');
  // An empty callable (a lambda without captures) has a byte that is not a value: send none.
  constexpr std::size_t size = std::is_empty_v<F> ? 0 : sizeof(F);
  TaskHeader h{0, &run_chunk<F, S...>, static_cast<std::uint32_t>(size), 0};
  append_raw(frame, &h, sizeof h);
  append_raw(frame, &f, size);
  append_raw(frame, &count, sizeof count);
  return frame;
}

// Decodes `count` results of type R from an ok payload, calling sink(R&&) for each.
template <class R, class Sink>
void take_results(ByteView payload, std::uint64_t count, Sink&& sink) {
  Reader r(payload);
  for (std::uint64_t i = 0; i < count; ++i) sink(take_value<R>(r));
}

// Decodes `count` results of type R from an ok payload into out[0, count).
template <class R>
void take_results_into(ByteView payload, std::uint64_t count, R* out) {
  if constexpr (TriviallyEncoded<R>) {
    if (payload.size() != count * sizeof(R)) {
      throw DecodeError("a pool result of " + std::to_string(count) + " values has " +
                        std::to_string(payload.size()) + " bytes");
    }
    std::memcpy(static_cast<void*>(out), payload.data(), payload.size());
  } else {
    take_results<R>(payload, count, [&](R&& v) { *out++ = std::move(v); });
  }
}

}  // namespace mpp::detail
