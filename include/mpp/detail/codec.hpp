// The one codec of mpp: how a value of type T becomes bytes and back, for queues, pipes,
// pools and the shared containers alike.
//
//   - trivially copyable T (ints, doubles, PODs, std::array of them): the object's own bytes,
//     stored inline; a read can borrow a `const T&` straight from shared memory.
//   - std::string: its characters, no length prefix (the container keeps the length); a
//     read can borrow a std::string_view.
//   - anything else: a Boost.Serialization binary archive (the type needs serialize(), and
//     the matching boost/serialization/<container>.hpp headers included by the user).
//
// The binary archive and inline bytes are native-endian: they are meant for processes on
// one machine. The network and Redis layers use portable encodings of their own.
//
// Raw pointers are refused at compile time: an address means nothing in another process.
#pragma once

#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/iostreams/device/array.hpp>
#include <boost/iostreams/device/back_inserter.hpp>
#include <boost/iostreams/stream.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "mpp/detail/type_name.hpp"
#include "mpp/errors.hpp"

namespace mpp::detail {

enum class Encoding : std::uint8_t { trivial = 1, string = 2, serialized = 3 };

template <class T>
concept TriviallyEncoded = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> &&
                           !std::is_member_pointer_v<T>;

template <class T>
inline constexpr Encoding encoding_of = TriviallyEncoded<T>                ? Encoding::trivial
                                        : std::is_same_v<T, std::string> ? Encoding::string
                                                                         : Encoding::serialized;

using ByteView = std::span<const std::byte>;

inline ByteView as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
inline std::string_view as_chars(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// The encoded form of one value. For trivial types and strings it borrows the value's own
// storage (no copy is made), so the value must outlive it; for serialized types it owns
// the archive bytes.
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

inline constexpr unsigned archive_flags = boost::archive::no_header | boost::archive::no_codecvt;

// The encoding of `value`. Serialized types are archived; the others are borrowed.
template <class T>
Encoded encode(const T& value) {
  static_assert(!std::is_pointer_v<T>, "mpp cannot share a raw pointer between processes");
  if constexpr (encoding_of<T> == Encoding::trivial) {
    return Encoded(std::as_bytes(std::span<const T, 1>(&value, 1)));
  } else if constexpr (encoding_of<T> == Encoding::string) {
    return Encoded(as_bytes(value));
  } else {
    std::string out;
    {
      boost::iostreams::stream<boost::iostreams::back_insert_device<std::string>> s(out);
      boost::archive::binary_oarchive ar(s, archive_flags);
      ar << value;
    }
    return Encoded(std::move(out));
  }
}

// The value encoded in `bytes`. Throws DecodeError when the bytes cannot be a T (wrong
// size for a trivial type, a corrupt or truncated archive).
template <class T>
T decode(ByteView bytes) {
  if constexpr (encoding_of<T> == Encoding::trivial) {
    if (bytes.size() != sizeof(T)) {
      throw DecodeError("cannot decode " + type_name<T>() + ": expected " +
                        std::to_string(sizeof(T)) + " bytes, got " + std::to_string(bytes.size()));
    }
    T v;
    std::memcpy(&v, bytes.data(), sizeof(T));
    return v;
  } else if constexpr (encoding_of<T> == Encoding::string) {
    return std::string(as_chars(bytes));
  } else {
    T v{};
    try {
      boost::iostreams::stream<boost::iostreams::array_source> s(
          reinterpret_cast<const char*>(bytes.data()), bytes.size());
      boost::archive::binary_iarchive ar(s, archive_flags);
      ar >> v;
    } catch (const std::exception& e) {
      throw DecodeError("cannot decode " + type_name<T>() + " from " +
                        std::to_string(bytes.size()) + " bytes: " + e.what());
    }
    return v;
  }
}

// What a zero-copy read yields: `const T&` into the bytes for trivial types (which must be
// suitably aligned, as mpp's containers keep them), std::string_view for strings, and a
// decoded copy for serialized types.
template <class T>
using View = std::conditional_t<encoding_of<T> == Encoding::trivial, const T&,
                                std::conditional_t<encoding_of<T> == Encoding::string,
                                                   std::string_view, T>>;

template <class T>
View<T> view(ByteView bytes) {
  if constexpr (encoding_of<T> == Encoding::trivial) {
    if (bytes.size() != sizeof(T)) (void)decode<T>(bytes);  // throws the size error
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
  return type_name<T>();
}

}  // namespace mpp::detail
