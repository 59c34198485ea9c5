#include "mpp/pipe.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace mpp::detail {

std::pair<int, int> make_socketpair(bool duplex) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    throw_os_error(errno, "socketpair for a Pipe");
  }
  if (!duplex) {
    // Enforced by the kernel too, not only by the Connection flags: a write on the
    // receiving end fails even through fileno().
    shutdown(fds[0], SHUT_WR);
    shutdown(fds[1], SHUT_RD);
  }
  return {fds[0], fds[1]};
}

}  // namespace mpp::detail
