// The portable encoding of values, for data that leaves the machine (mpp::redis): bytes
// that mean the same on every host, whatever its endianness, word size or compiler.
//
//   - bool, integers, enums, float and double: fixed little-endian, sizeof(T) bytes
//     (float and double as their IEEE 754 bits). An int32_t written on one host is read
//     as the same int32_t on any other.
//   - std::string: its bytes, unchanged.
//   - anything else: a Boost.Serialization *text* archive (the type needs serialize(), and
//     the user includes the boost/serialization/<container>.hpp headers it uses). Text, not
//     the native binary archive of detail/codec.hpp: the binary archive writes native
//     integers and is only meant for one machine; Boost 1.81 ships no portable binary
//     archive (portable_binary_archive is only an example in its sources).
//
// long double and raw pointers are refused at compile time: neither has a portable meaning.
#pragma once

#include <bit>
#include <boost/archive/text_iarchive.hpp>
#include <boost/archive/text_oarchive.hpp>
#include <boost/iostreams/device/array.hpp>
#include <boost/iostreams/device/back_inserter.hpp>
#include <boost/iostreams/stream.hpp>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "mpp/detail/codec.hpp"
#include "mpp/detail/type_name.hpp"
#include "mpp/errors.hpp"

namespace mpp::detail {

template <class T>
concept PortableNumber = (std::is_arithmetic_v<T> || std::is_enum_v<T>) &&
                         !std::is_same_v<std::remove_cv_t<T>, long double>;

template <class T>
inline constexpr bool portable_is_archive = !PortableNumber<T> && !std::is_same_v<T, std::string>;

// The unsigned integer with T's size, through which a number is written byte by byte.
template <class T>
using PortableBits = std::conditional_t<
    sizeof(T) == 1, std::uint8_t,
    std::conditional_t<sizeof(T) == 2, std::uint16_t,
                       std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>>;

// Appends the portable encoding of `value` to `out`.
template <class T>
void portable_encode_to(const T& value, std::string& out) {
  static_assert(!std::is_pointer_v<T>, "a raw pointer has no meaning on another machine");
  static_assert(!std::is_same_v<std::remove_cv_t<T>, long double>,
                "long double has no portable layout; use double");
  if constexpr (PortableNumber<T>) {
    static_assert(sizeof(T) <= 8);
    using U = PortableBits<T>;
    U bits;
    if constexpr (std::is_same_v<T, bool>) {
      bits = value ? 1 : 0;
    } else {
      bits = std::bit_cast<U>(value);
    }
    char b[sizeof(T)];
    for (std::size_t i = 0; i < sizeof(T); ++i) b[i] = static_cast<char>((bits >> (8 * i)) & 0xff);
    out.append(b, sizeof(T));
  } else if constexpr (std::is_same_v<T, std::string>) {
    out.append(value);
  } else {
    boost::iostreams::stream<boost::iostreams::back_insert_device<std::string>> s(out);
    boost::archive::text_oarchive ar(s, boost::archive::no_codecvt);
    ar << value;
  }
}

// The portable encoding of `value`: strings are borrowed (the value must outlive the
// result), numbers and archives are owned.
template <class T>
Encoded portable_encode(const T& value) {
  if constexpr (std::is_same_v<T, std::string>) {
    return Encoded(as_bytes(value));
  } else {
    std::string out;
    portable_encode_to(value, out);
    return Encoded(std::move(out));
  }
}

// The value whose portable encoding is `bytes`. Throws DecodeError when the bytes cannot
// be a T (wrong size for a number, a corrupt or truncated archive).
template <class T>
T portable_decode(std::string_view bytes) {
  if constexpr (PortableNumber<T>) {
    if (bytes.size() != sizeof(T)) throw_wrong_size<T>(bytes.size());
    using U = PortableBits<T>;
    U bits = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      bits |= static_cast<U>(static_cast<U>(static_cast<unsigned char>(bytes[i])) << (8 * i));
    }
    if constexpr (std::is_same_v<T, bool>) {
      if (bits > 1) throw DecodeError("cannot decode bool from the byte " + std::to_string(bits));
      return bits == 1;
    } else {
      return std::bit_cast<T>(bits);
    }
  } else if constexpr (std::is_same_v<T, std::string>) {
    return std::string(bytes);
  } else {
    T v{};
    try {
      boost::iostreams::stream<boost::iostreams::array_source> s(bytes.data(), bytes.size());
      boost::archive::text_iarchive ar(s, boost::archive::no_codecvt);
      ar >> v;
    } catch (const std::exception& e) {
      throw DecodeError("cannot decode " + type_name<T>() + " from " +
                        std::to_string(bytes.size()) + " bytes: " + e.what());
    }
    return v;
  }
}

}  // namespace mpp::detail
