#include "mpp/errors.hpp"

#include <cerrno>
#include <cstring>
#include <sstream>

namespace mpp {
namespace {

std::string join_cmd(const std::vector<std::string>& cmd) {
  std::string s;
  for (const auto& a : cmd) {
    if (!s.empty()) s += ' ';
    s += a;
  }
  return s;
}

}  // namespace

OSError::OSError(int error_number, const std::string& what)
    : Error(what), errno_(error_number) {}

RemoteError::RemoteError(std::string type_name, std::string message)
    : Error(type_name + ": " + message), type_(std::move(type_name)), message_(std::move(message)) {}

namespace subprocess {

CalledProcessError::CalledProcessError(int rc, std::vector<std::string> c,
                                       std::optional<std::string> out,
                                       std::optional<std::string> err)
    : Error([&] {
        std::ostringstream m;
        m << "Command '" << join_cmd(c) << "' ";
        if (rc < 0) {
          m << "died with signal " << -rc << " (" << strsignal(-rc) << ").";
        } else {
          m << "returned non-zero exit status " << rc << ".";
        }
        return m.str();
      }()),
      returncode(rc),
      cmd(std::move(c)),
      output(std::move(out)),
      stderr_output(std::move(err)) {}

TimeoutExpired::TimeoutExpired(std::vector<std::string> c, double t,
                               std::optional<std::string> out,
                               std::optional<std::string> err)
    : Error("Command '" + join_cmd(c) + "' timed out after " + [t] {
        std::ostringstream m;
        m << t;
        return m.str();
      }() + " seconds"),
      cmd(std::move(c)),
      timeout(t),
      output(std::move(out)),
      stderr_output(std::move(err)) {}

}  // namespace subprocess

void throw_os_error(int error_number, const std::string& what) {
  std::string msg = what + ": " + std::strerror(error_number);
  if (error_number == ENOENT) throw FileNotFoundError(error_number, msg);
  if (error_number == EEXIST) throw FileExistsError(error_number, msg);
  if (error_number == EACCES || error_number == EPERM) throw PermissionError(error_number, msg);
  throw OSError(error_number, msg);
}

}  // namespace mpp
