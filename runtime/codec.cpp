#include "mpp/detail/codec.hpp"

#include <string>

namespace mpp::detail {

void throw_wrong_size(const std::string& type, std::size_t expected, std::size_t got) {
  throw DecodeError("cannot decode " + type + ": expected " + std::to_string(expected) + " bytes, got " +
                    std::to_string(got));
}

}  // namespace mpp::detail
