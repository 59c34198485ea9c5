// mpp::Pipe<T>(duplex): Python's multiprocessing.Pipe — two connected Connection<T>s over
// an AF_UNIX seqpacket socketpair, to be shared with a child forked after it is made.
#pragma once

#include <utility>

#include "mpp/connection.hpp"

namespace mpp {

namespace detail {
// Makes the socketpair: {fd0, fd1}. With duplex false, fd0 can only receive and fd1 can
// only send (shut down in the other direction). Close-on-exec. Throws OSError.
std::pair<int, int> make_socketpair(bool duplex);
}  // namespace detail

// Returns the two ends [a, b] of a new pipe. With duplex (the default) both ends send and
// receive; otherwise, as Python, `a` only receives and `b` only sends. Throws OSError when
// the descriptors cannot be made (EMFILE...). Typical use:
//   auto [parent_conn, child_conn] = mpp::Pipe<std::vector<int>>();
template <class T>
std::pair<Connection<T>, Connection<T>> Pipe(bool duplex = true) {
  auto [fd0, fd1] = detail::make_socketpair(duplex);
  return {Connection<T>(fd0, true, duplex), Connection<T>(fd1, duplex, true)};
}

}  // namespace mpp
