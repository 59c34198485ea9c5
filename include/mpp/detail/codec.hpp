// The one codec of mpp: how a value of type T becomes bytes and back, for queues, pipes,
// pools and the shared containers alike. What can be sent is public (mpp/serialization.hpp);
// this is how:
//
//   - trivial (trivially copyable T): the object's own bytes, stored inline; a read can
//     borrow a `const T&` straight from shared memory.
//   - string (std::string): its characters, no length prefix (the container keeps the
//     length); a read can borrow a std::string_view.
//   - native (standard containers, pair/tuple/array, optional, variant, nested): mpp's own
//     compact format, written and read here without Boost. Elements one after the other;
//     a container as a count (LEB128 varint) then its elements; a contiguous run of
//     trivially copyable elements as one block; optional as a 0/1 byte then the value;
//     variant as its index (varint) then the alternative; a nested string as its length
//     then its characters; a nested archive-encoded value as its length then the archive.
//   - serialized (a user type with serialize()): a Boost.Serialization binary archive, from
//     mpp/archive.hpp, which the user includes only where such a type is sent.
//   - handle (a Manager object's handle): a reference, from mpp/handle_codec.hpp.
//
// A type that is none of these is refused with one static_assert (SendCheck below).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "mpp/detail/type_name.hpp"
#include "mpp/errors.hpp"
#include "mpp/serialization.hpp"

namespace mpp::detail {

enum class Encoding : std::uint8_t { trivial = 1, string = 2, serialized = 3, native = 4, handle = 5 };

template <class T>
inline constexpr Encoding encoding_of =
    TriviallyEncoded<T>                ? Encoding::trivial
    : std::is_same_v<T, std::string>   ? Encoding::string
    : Handle<T>                        ? Encoding::handle
    : sendable<T>() && !HasSerialize<T> ? Encoding::native
                                       : Encoding::serialized;

using ByteView = std::span<const std::byte>;

inline ByteView as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
inline std::string_view as_chars(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// The Boost archive path for types with serialize(); defined by mpp/archive.hpp:
//   static void save(std::string& out, const T&);  // appends the archive
//   static T load(ByteView);                        // throws DecodeError
template <class T>
struct ArchiveCodec;

// The reference encoding of handles; defined by mpp/handle_codec.hpp, with the same members.
template <class T>
struct HandleCodec;

template <class T>
constexpr auto unsendable_part();

// The first element type among E... that cannot be sent (or its unsendable part); Outer
// when they all can.
template <class Outer>
constexpr auto first_unsendable_of() {
  return std::type_identity<Outer>{};
}
template <class Outer, class E, class... Rest>
constexpr auto first_unsendable_of() {
  if constexpr (!sendable<E>()) return unsendable_part<E>();
  else return first_unsendable_of<Outer, Rest...>();
}

// The part of T that cannot be sent (T itself, or the element of a container that
// cannot), void when all of T can: the type a refusal names.
template <class T>
constexpr auto unsendable_part() {
  if constexpr (sendable<T>()) {
    return std::type_identity<void>{};
  } else if constexpr (is_optional<T>) {
    return unsendable_part<typename T::value_type>();
  } else if constexpr (is_variant<T>) {
    return []<class... A>(std::type_identity<std::variant<A...>>) {
      return first_unsendable_of<T, A...>();
    }(std::type_identity<T>{});
  } else if constexpr (TupleLike<T>) {
    return []<std::size_t... I>(std::index_sequence<I...>) {
      return first_unsendable_of<T, std::remove_cv_t<std::tuple_element_t<I, T>>...>();
    }(std::make_index_sequence<std::tuple_size_v<T>>());
  } else if constexpr (MapLike<T>) {
    return first_unsendable_of<T, typename T::key_type, typename T::mapped_type>();
  } else if constexpr (RangeLike<T>) {
    return unsendable_part<typename T::value_type>();
  } else {
    return std::type_identity<T>{};
  }
}

template <class T>
struct HandleCheck {
  static_assert(requires { HandleCodec<T>::save; }, "a Manager's handle is sent as a reference: include <mpp/manager.hpp> where it is sent or received");
  static constexpr bool ok = true;
};

// Whether the reference encoding of handle T is there (mpp/handle_codec.hpp included).
template <class T>
constexpr bool handle_ready() {
  static_assert(HandleCheck<T>::ok);
  return requires { HandleCodec<T>::save; };
}

// Instantiated once per refused type, so that a refusal is one error, however many
// functions use the type.
template <class T>
struct SendCheck {
  static_assert(is_sendable_v<T>, "mpp cannot send this type: make it trivially copyable, or give it a serialize() (Boost.Serialization) and include <mpp/archive.hpp>; see mpp/serialization.hpp");
  static constexpr bool ok = true;
};
template <class T>
struct SendCheck<T*> {
  static_assert(is_sendable_v<T*>, "mpp cannot send a raw pointer: an address means nothing in another process");
  static constexpr bool ok = true;
};
template <>
struct SendCheck<void> {
  static constexpr bool ok = true;
};

template <class T>
struct ArchiveCheck {
  static_assert(requires { ArchiveCodec<T>::save; }, "this type is sent through its serialize() (Boost.Serialization): include <mpp/archive.hpp> where it is sent or received");
  static constexpr bool ok = true;
};

// Whether T can be encoded; refuses it (one static_assert) when it cannot.
template <class T>
constexpr bool checked() {
  using Part = typename decltype(unsendable_part<T>())::type;
  static_assert(SendCheck<Part>::ok);
  return std::is_same_v<Part, void>;
}

// Whether the archive path is there for T (mpp/archive.hpp included); refuses T (one
// static_assert) when it is not.
template <class T>
constexpr bool archive_ready() {
  static_assert(ArchiveCheck<T>::ok);
  return requires { ArchiveCodec<T>::save; };
}

// The encoded form of one value. For trivial types and strings it borrows the value's own
// storage (no copy is made), so the value must outlive it; for the others it owns its bytes.
class Encoded {
 public:
  explicit Encoded(ByteView borrowed) : view_(borrowed) {}
  explicit Encoded(std::string owned)
      : owned_(std::move(owned)), view_(as_bytes(owned_)), owning_(true) {}
  Encoded(Encoded&& o) noexcept
      : owned_(std::move(o.owned_)), view_(o.owning_ ? as_bytes(owned_) : o.view_),
        owning_(o.owning_) {}
  Encoded(const Encoded&) = delete;
  Encoded& operator=(const Encoded&) = delete;

  ByteView bytes() const { return view_; }
  std::size_t size() const { return view_.size(); }

 private:
  std::string owned_;
  ByteView view_;
  bool owning_ = false;
};

// --- the native format -------------------------------------------------------------------

inline void put_varint(std::string& out, std::uint64_t n) {
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7f) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
}

// A bounds-checked cursor over native-encoded bytes; every overrun is a DecodeError.
class NativeReader {
 public:
  explicit NativeReader(ByteView b) : p_(b.data()), end_(b.data() + b.size()) {}
  std::size_t left() const { return static_cast<std::size_t>(end_ - p_); }
  const std::byte* take(std::size_t n) {
    if (left() < n) {
      throw DecodeError("truncated: needed " + std::to_string(n) + " more bytes, " +
                        std::to_string(left()) + " left");
    }
    const std::byte* at = p_;
    p_ += n;
    return at;
  }
  std::uint64_t varint() {
    std::uint64_t n = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
      auto b = static_cast<std::uint8_t>(*take(1));
      n |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return n;
    }
    throw DecodeError("a length runs over 64 bits");
  }
  // A count of elements that each take at least `min_bytes`: never more than what is left,
  // so a corrupt count cannot make the reader allocate beyond the message.
  std::size_t count(std::size_t min_bytes) {
    std::uint64_t n = varint();
    if (min_bytes > 0 && n > left() / min_bytes) {
      throw DecodeError("a count of " + std::to_string(n) + " elements exceeds the " +
                        std::to_string(left()) + " bytes left");
    }
    return static_cast<std::size_t>(n);
  }

 private:
  const std::byte* p_;
  const std::byte* end_;
};

template <class T>
concept ContiguousTrivial = RangeLike<T> && TriviallyEncoded<typename T::value_type> &&
                            requires(T& t) {
                              t.data();
                              t.resize(std::size_t{});
                            } && std::contiguous_iterator<typename T::iterator>;

template <class T>
void encode_to(std::string& out, const T& v);
template <class T>
T decode_from(NativeReader& r);

template <class T>
void encode_to(std::string& out, const T& v) {
  if constexpr (TriviallyEncoded<T>) {
    out.append(reinterpret_cast<const char*>(&v), sizeof(T));
  } else if constexpr (encoding_of<T> == Encoding::serialized ||
                       encoding_of<T> == Encoding::handle) {
    std::string inner;
    if constexpr (encoding_of<T> == Encoding::handle) {
      if constexpr (handle_ready<T>()) HandleCodec<T>::save(inner, v);
    } else if constexpr (archive_ready<T>()) {
      ArchiveCodec<T>::save(inner, v);
    }
    put_varint(out, inner.size());
    out += inner;
  } else if constexpr (is_optional<T>) {
    out.push_back(v ? 1 : 0);
    if (v) encode_to(out, *v);
  } else if constexpr (is_variant<T>) {
    if (v.valueless_by_exception()) throw ValueError("cannot send a valueless std::variant");
    put_varint(out, v.index());
    std::visit([&](const auto& x) { encode_to(out, x); }, v);
  } else if constexpr (TupleLike<T>) {
    std::apply([&](const auto&... x) { (encode_to(out, x), ...); }, v);
  } else if constexpr (ContiguousTrivial<T>) {
    put_varint(out, v.size());
    if (v.size() != 0) {  // data() may be null
      out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(typename T::value_type));
    }
  } else if constexpr (MapLike<T>) {
    put_varint(out, v.size());
    for (const auto& [k, m] : v) {
      encode_to(out, k);
      encode_to(out, m);
    }
  } else {
    static_assert(RangeLike<T>);
    put_varint(out, v.size());
    for (const auto& e : v) encode_to(out, static_cast<const typename T::value_type&>(e));
  }
}

template <class V, std::size_t... I>
V decode_variant(NativeReader& r, std::size_t index, std::index_sequence<I...>) {
  V v;
  bool found = ((index == I ? (v.template emplace<I>(decode_from<std::variant_alternative_t<I, V>>(r)), true)
                            : false) ||
                ...);
  if (!found) throw DecodeError("variant index " + std::to_string(index) + " out of range");
  return v;
}

template <class T>
T decode_from(NativeReader& r) {
  if constexpr (TriviallyEncoded<T>) {
    T v;
    std::memcpy(static_cast<void*>(&v), r.take(sizeof(T)), sizeof(T));
    return v;
  } else if constexpr (encoding_of<T> == Encoding::serialized ||
                       encoding_of<T> == Encoding::handle) {
    std::size_t n = r.count(1);
    ByteView inner(r.take(n), n);
    if constexpr (encoding_of<T> == Encoding::handle) {
      if constexpr (handle_ready<T>()) return HandleCodec<T>::load(inner);
      else throw DecodeError("unreachable");
    } else if constexpr (archive_ready<T>()) {
      return ArchiveCodec<T>::load(inner);
    } else {
      throw DecodeError("unreachable");
    }
  } else if constexpr (is_optional<T>) {
    auto flag = static_cast<std::uint8_t>(*r.take(1));
    if (flag > 1) throw DecodeError("an optional's flag is " + std::to_string(flag));
    if (!flag) return T{};
    return T(decode_from<typename T::value_type>(r));
  } else if constexpr (is_variant<T>) {
    std::uint64_t index = r.varint();
    return decode_variant<T>(r, static_cast<std::size_t>(index),
                             std::make_index_sequence<std::variant_size_v<T>>());
  } else if constexpr (TupleLike<T>) {
    // Braced initialisation evaluates the elements in order, and needs no default
    // constructor (handles have none).
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return T{decode_from<std::remove_cv_t<std::tuple_element_t<I, T>>>(r)...};
    }(std::make_index_sequence<std::tuple_size_v<T>>());
  } else if constexpr (ContiguousTrivial<T>) {
    using E = typename T::value_type;
    std::size_t n = r.count(sizeof(E));
    T v;
    v.resize(n);
    const std::byte* src = r.take(n * sizeof(E));
    if (n != 0) std::memcpy(static_cast<void*>(v.data()), src, n * sizeof(E));  // data() may be null
    return v;
  } else if constexpr (MapLike<T>) {
    std::size_t n = r.count(1);
    T v;
    for (std::size_t i = 0; i < n; ++i) {
      auto k = decode_from<typename T::key_type>(r);
      v.emplace(std::move(k), decode_from<typename T::mapped_type>(r));
    }
    return v;
  } else {
    using E = typename T::value_type;
    std::size_t n = r.count(1);
    T v;
    if constexpr (requires { v.reserve(n); }) v.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      if constexpr (requires { v.push_back(std::declval<E>()); }) v.push_back(decode_from<E>(r));
      else v.insert(decode_from<E>(r));
    }
    return v;
  }
}

// --- the entry points --------------------------------------------------------------------

// The encoding of `value`. Trivial values and strings are borrowed; the others are encoded.
template <class T>
Encoded encode(const T& value) {
  if constexpr (!checked<T>()) {
    return Encoded(ByteView{});
  } else if constexpr (encoding_of<T> == Encoding::trivial) {
    return Encoded(std::as_bytes(std::span<const T, 1>(&value, 1)));
  } else if constexpr (encoding_of<T> == Encoding::string) {
    return Encoded(as_bytes(value));
  } else {
    std::string out;
    if constexpr (encoding_of<T> == Encoding::serialized) {
      if constexpr (archive_ready<T>()) ArchiveCodec<T>::save(out, value);
    }
    else if constexpr (encoding_of<T> == Encoding::handle) {
      if constexpr (handle_ready<T>()) HandleCodec<T>::save(out, value);
    }
    else encode_to(out, value);
    return Encoded(std::move(out));
  }
}

// DecodeError for `got` bytes where a trivial T needs sizeof(T). Out of line and cold, the
// message built inside: decode, view and Dict::get of a trivial type then stay a compare and
// a copy that inline, with no string building in their frames (a counted word's modify
// decodes its value on every call).
template <class T>
[[noreturn, gnu::cold, gnu::noinline]] void throw_wrong_size(std::size_t got) {
  throw DecodeError("cannot decode " + type_name<T>() + ": expected " + std::to_string(sizeof(T)) +
                    " bytes, got " + std::to_string(got));
}

// The value encoded in `bytes`. Throws DecodeError when the bytes cannot be a T (wrong
// size for a trivial type, a corrupt or truncated encoding, bytes left over).
template <class T>
T decode(ByteView bytes) {
  if constexpr (!checked<T>()) {
    throw DecodeError("unreachable");
  } else if constexpr (encoding_of<T> == Encoding::trivial) {
    if (bytes.size() != sizeof(T)) [[unlikely]] throw_wrong_size<T>(bytes.size());
    T v;
    std::memcpy(static_cast<void*>(&v), bytes.data(), sizeof(T));
    return v;
  } else if constexpr (encoding_of<T> == Encoding::string) {
    return std::string(as_chars(bytes));
  } else if constexpr (encoding_of<T> == Encoding::serialized) {
    if constexpr (archive_ready<T>()) return ArchiveCodec<T>::load(bytes);
    else throw DecodeError("unreachable");
  } else if constexpr (encoding_of<T> == Encoding::handle) {
    if constexpr (handle_ready<T>()) return HandleCodec<T>::load(bytes);
    else throw DecodeError("unreachable");
  } else {
    try {
      NativeReader r(bytes);
      T v = decode_from<T>(r);
      if (r.left() != 0) throw DecodeError(std::to_string(r.left()) + " bytes left over");
      return v;
    } catch (const DecodeError& e) {
      throw DecodeError("cannot decode " + type_name<T>() + " from " +
                        std::to_string(bytes.size()) + " bytes: " + e.what());
    }
  }
}

// What a zero-copy read yields (mpp::View, public in serialization.hpp). The bytes of a
// trivial type must be suitably aligned, as mpp's containers keep them.
template <class T>
using View = mpp::View<T>;
static_assert(std::is_same_v<View<int>, const int&> && std::is_same_v<View<std::string>, std::string_view>);

template <class T>
View<T> view(ByteView bytes) {
  if constexpr (encoding_of<T> == Encoding::trivial) {
    if (bytes.size() != sizeof(T)) [[unlikely]] throw_wrong_size<T>(bytes.size());
    return *std::launder(reinterpret_cast<const T*>(bytes.data()));
  } else if constexpr (encoding_of<T> == Encoding::string) {
    return as_chars(bytes);
  } else {
    return decode<T>(bytes);
  }
}

// A fingerprint of how T is encoded, stored beside named objects so that opening one with
// other types is caught (TypeMismatch) rather than misread.
template <class T>
std::string type_fingerprint() {
  (void)checked<T>();
  return type_name<T>();
}

}  // namespace mpp::detail
