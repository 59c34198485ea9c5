// Reading an object's contents without its C++ types: every object kind's layout is walked
// read-only, with each offset bounds-checked, and each stored value printed from the type
// name in the directory — numbers and strings as themselves, anything else as its type and
// hex bytes.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "segment_reader.hpp"

namespace mpp::inspect {

struct DumpRow {
  std::optional<std::string> key;  // dicts only
  std::string value;
};

struct DumpResult {
  std::vector<DumpRow> rows;
  bool truncated = false;  // more than `limit` entries
  std::string note;        // e.g. why the contents could not be listed
};

// A stored value printed by its C++ type name: integers, floating point, bool, char and
// std::string as themselves; anything else as "<type> [N bytes] hex...".
std::string format_value(std::string_view type, std::span<const std::byte> bytes);

// Up to `limit` entries of object `o` of the segment image at `base`.
DumpResult dump_object(const void* base, std::size_t size, const ObjectInfo& o, std::size_t limit);

// Structural problems of object `o` (empty when sound or when its kind has no deeper check).
std::vector<std::string> check_object(const void* base, std::size_t size, const ObjectInfo& o);

}  // namespace mpp::inspect
