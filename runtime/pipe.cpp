#include "mpp/pipe.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace mpp::detail {

std::pair<int, int> make_socketpair(bool duplex) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    throw_os_error(errno, "socketpair for a Pipe");
  }
  // A record must fit in the sender's buffer (EMSGSIZE otherwise); the default (208 KiB)
  // does, but a machine may have lowered it.
  for (int fd : fds) {
    int size = 0;
    socklen_t len = sizeof size;
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &len) == 0 && size < 160 * 1024) {
      size = 160 * 1024;
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    }
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
