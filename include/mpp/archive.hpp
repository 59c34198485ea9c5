// The Boost.Serialization path of the codec: how a type of yours with serialize() is sent
// (rule 4 of mpp/serialization.hpp). Include it in the files that send or receive such a
// type, with the boost/serialization/<container>.hpp headers its serialize() needs.
//
// It is a header of its own because Boost's archive headers cost seconds of compile time
// in every file that includes them; files that send only trivially copyable values,
// strings and standard containers never include it.
//
// The archive is Boost's binary archive, without its header: native-endian, for processes
// of one machine.
#pragma once

#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/iostreams/device/array.hpp>
#include <boost/iostreams/device/back_inserter.hpp>
#include <boost/iostreams/stream.hpp>
#include <exception>
#include <string>

#include "mpp/detail/codec.hpp"
#include "mpp/detail/type_name.hpp"
#include "mpp/errors.hpp"

namespace mpp::detail {

inline constexpr unsigned archive_flags = boost::archive::no_header | boost::archive::no_codecvt;

template <class T>
struct ArchiveCodec {
  // Appends the archive of `value` to `out`.
  static void save(std::string& out, const T& value) {
    boost::iostreams::stream<boost::iostreams::back_insert_device<std::string>> s(out);
    boost::archive::binary_oarchive ar(s, archive_flags);
    ar << value;
  }

  // The value archived in `bytes`. Throws DecodeError for a corrupt or truncated archive.
  static T load(ByteView bytes) {
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
};

}  // namespace mpp::detail
