#include "mpp/detail/os/fd.hpp"

#include <fcntl.h>

#include <cerrno>

#include "mpp/errors.hpp"

namespace mpp::detail::os {

PipeFds make_pipe(const char* what) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_os_error(errno, std::string("pipe2 (") + what + ")");
  return {Fd(fds[0]), Fd(fds[1])};
}

}  // namespace mpp::detail::os
