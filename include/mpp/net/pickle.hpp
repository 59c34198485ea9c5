// The pickle codec of mpp::net: the safe subset of Python's pickle that
// multiprocessing.managers needs, and nothing more.
//
// Decoding never imports, looks up, constructs or calls anything. A GLOBAL is data and must
// be on a short allow-list: queue.Empty / _queue.Empty / queue.Full and the common builtins
// exceptions (REDUCE gives an inert ExceptionValue), multiprocessing.managers.Token (only
// the NEWOBJ + BUILD shape), builtins.set / frozenset / bytearray (protocol 3 and 4
// encodings of those), builtins.list (CPython's managers send dict views as list(<list>))
// and builtins.slice (int or None bounds: a proxy's l[1:3]). Anything else — os.system, a user
// class, a datetime — is refused with DecodeError naming it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "mpp/net/pyobject.hpp"

namespace mpp::net {

// Limits that bound the work and memory one decode can cost, whatever the input.
struct PickleLimits {
  std::size_t max_depth = 200;       // nesting of containers (and MARKs)
  std::size_t max_items = 1u << 22;  // values in the decoded result, shared ones counted each time
  std::size_t max_memo = 1u << 20;   // memo entries
  std::size_t max_bigint_bytes = 4096;  // bytes of one LONG1/LONG4
};

// The value pickled in `data`. Accepts protocols 2 to 5 within the subset (see above).
// Throws mpp::DecodeError, saying what was wrong and where, for anything else: an opcode or
// global outside the subset, truncated input, invalid UTF-8, bytes after STOP, a limit passed.
PyObject unpickle(std::string_view data, const PickleLimits& limits = {});

// `v` pickled with protocol 4 (readable by Python 3.4 and later), without FRAME or memo;
// the only globals it writes are queue.Empty, queue.Full, builtins exceptions (for an
// ExceptionValue of another module it throws ValueError), builtins.bytearray,
// builtins.slice and multiprocessing.managers.Token.
// Throws ValueError for a value nested deeper than 200.
std::string pickle(const PyObject& v);

}  // namespace mpp::net
