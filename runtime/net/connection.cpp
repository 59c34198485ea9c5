// Framing and handshake over a plain blocking socket fd. Boost.Asio resolves names (and, in
// the server, accepts); the reads and writes themselves are recv/sendmsg with poll() for
// deadlines, because Asio's synchronous operations have no timeouts and the proxies'
// blocking calls (queue.get with a timeout) need exactly that.
#include "mpp/net/connection.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cerrno>
#include <cstring>

#include "mpp/errors.hpp"

namespace mpp::net {
namespace {

// The first size of a receive buffer: one recv takes many small frames at once.
constexpr std::size_t kInitialBuffer = 65536;
// A buffer larger than this is given back once it is empty (after a large frame).
constexpr std::size_t kKeptBuffer = std::size_t{1} << 20;

// What a buffer of `size` bytes costs a BufferBudget: its first kInitialBuffer bytes are free
// (bounded by the number of connections), so small requests are served whatever large frames
// hold the budget.
std::size_t charged(std::size_t size) { return size > kInitialBuffer ? size - kInitialBuffer : 0; }

// Waits until `fd` is ready for `events` or the deadline passes (TimeoutError).
void wait_ready(int fd, short events, Deadline deadline, const char* what) {
  if (!deadline) return;
  while (true) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now()).count();
    if (left <= 0) throw TimeoutError(std::string("timed out ") + what);
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1 << 30)));
    if (r > 0) return;
    if (r < 0 && errno != EINTR) throw_os_error(errno, std::string("poll while ") + what);
  }
}

const EVP_MD* digest_by_python_name(std::string_view name) {
  if (name == "md5") return EVP_md5();
  if (name == "sha256") return EVP_sha256();
  if (name == "sha384") return EVP_sha384();
  if (name == "sha3_256") return EVP_sha3_256();
  if (name == "sha3_384") return EVP_sha3_384();
  return nullptr;
}

std::string random_bytes(std::size_t n) {
  std::string s(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), static_cast<int>(n)) != 1)
    throw OSError(EIO, "RAND_bytes could not produce a challenge");
  return s;
}

bool equal_ct(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

Deadline deadline_after(std::chrono::milliseconds d) {
  if (d.count() <= 0) return std::nullopt;
  return Clock::now() + d;
}

Connection::Connection(int fd) : fd_(fd) {}
Connection::Connection(Connection&& o) noexcept
    : fd_(std::move(o.fd_)),
      buf_(std::move(o.buf_)),
      buf_pos_(std::exchange(o.buf_pos_, 0)),
      buf_end_(std::exchange(o.buf_end_, 0)),
      budget_(std::move(o.budget_)) {}
Connection& Connection::operator=(Connection&& o) noexcept {
  if (this != &o) {
    if (budget_) budget_->give_back(charged(buf_.size()));
    fd_ = std::move(o.fd_);
    buf_ = std::move(o.buf_);
    buf_pos_ = std::exchange(o.buf_pos_, 0);
    buf_end_ = std::exchange(o.buf_end_, 0);
    budget_ = std::move(o.budget_);
  }
  return *this;
}
Connection::~Connection() {
  if (budget_) budget_->give_back(charged(buf_.size()));
}

void Connection::set_budget(std::shared_ptr<BufferBudget> budget) {
  if (budget && !budget->try_take(charged(buf_.size())))
    throw OSError(ENOMEM, "the receive buffers' memory budget is spent");
  if (budget_) budget_->give_back(charged(buf_.size()));
  budget_ = std::move(budget);
}

void Connection::resize_buffer(std::size_t size) {
  if (budget_ && size > buf_.size() && !budget_->try_take(charged(size) - charged(buf_.size())))
    throw OSError(ENOMEM, "a frame from " + peer_name() + " needs a " + std::to_string(size) +
                              "-byte buffer, more than is left of the receive buffers' budget of " +
                              std::to_string(budget_->limit()) + " bytes");
  if (budget_ && size < buf_.size()) budget_->give_back(charged(buf_.size()) - charged(size));
  if (size == 0)
    std::string().swap(buf_);
  else
    buf_.resize(size);
}

void Connection::shutdown() noexcept {
  if (fd_) ::shutdown(fd_.get(), SHUT_RDWR);
}
void Connection::set_recv_timeout(std::chrono::milliseconds idle) {
  timeval tv{};
  if (idle.count() > 0) {
    tv.tv_sec = static_cast<time_t>(idle.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((idle.count() % 1000) * 1000);
  }
  if (::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
    throw_os_error(errno, "SO_RCVTIMEO");
}

void Connection::shutdown_read() noexcept {
  if (fd_) ::shutdown(fd_.get(), SHUT_RD);
}

std::string Connection::peer_name() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

Connection Connection::connect(const std::string& host, std::uint16_t port,
                               std::chrono::milliseconds timeout) {
  namespace ip = boost::asio::ip;
  std::string where = host + ":" + std::to_string(port);
  boost::asio::io_context io;
  ip::tcp::resolver resolver(io);
  boost::system::error_code ec;
  auto results =
      resolver.resolve(host, std::to_string(port), ip::resolver_base::numeric_service, ec);
  if (ec) throw OSError(EHOSTUNREACH, "cannot resolve " + where + ": " + ec.message());
  auto deadline = deadline_after(timeout);
  int last_errno = EHOSTUNREACH;
  for (const auto& entry : results) {
    auto ep = entry.endpoint();
    int fd = ::socket(ep.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) throw_os_error(errno, "socket");
    Connection c(fd);
    int r = ::connect(fd, ep.data(), static_cast<socklen_t>(ep.size()));
    if (r != 0 && errno == EINPROGRESS) {
      try {
        wait_ready(fd, POLLOUT, deadline, ("connecting to " + where).c_str());
      } catch (const TimeoutError&) {
        throw_os_error(ETIMEDOUT, "connecting to " + where);
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      r = err == 0 ? 0 : -1;
      errno = err;
    }
    if (r != 0) {
      last_errno = errno;
      continue;
    }
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return c;
  }
  throw_os_error(last_errno, "connecting to " + where);
}

void Connection::send_bytes(std::string_view payload, Deadline deadline) {
  if (!fd_) throw OSError(EBADF, "send on a closed connection");
  unsigned char prefix[12];
  std::size_t plen;
  std::uint64_t n = payload.size();
  if (n <= 0x7fffffff) {
    for (int k = 0; k < 4; ++k) prefix[k] = static_cast<unsigned char>(n >> (24 - 8 * k));
    plen = 4;
  } else {
    std::memset(prefix, 0xff, 4);
    for (int k = 0; k < 8; ++k) prefix[4 + k] = static_cast<unsigned char>(n >> (56 - 8 * k));
    plen = 12;
  }
  iovec iov[2] = {{prefix, plen}, {const_cast<char*>(payload.data()), payload.size()}};
  std::size_t total = plen + payload.size(), sent = 0;
  bool wait = false;
  while (sent < total) {
    if (wait) wait_ready(fd_.get(), POLLOUT, deadline, "sending a frame");
    // Skip what is sent already; both parts go in one sendmsg whenever the kernel takes them.
    iovec cur[2];
    int cnt = 0;
    std::size_t skip = sent;
    for (auto& v : iov) {
      if (skip >= v.iov_len) {
        skip -= v.iov_len;
        continue;
      }
      cur[cnt++] = {static_cast<char*>(v.iov_base) + skip, v.iov_len - skip};
      skip = 0;
    }
    msghdr msg{};
    msg.msg_iov = cur;
    msg.msg_iovlen = static_cast<std::size_t>(cnt);
    ssize_t r = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | (deadline ? MSG_DONTWAIT : 0));
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait = true;
        continue;
      }
      throw_os_error(errno, "sending a frame to " + peer_name());
    }
    sent += static_cast<std::size_t>(r);
  }
}

void Connection::fill(std::size_t need, Deadline deadline, bool frame_started) {
  while (buf_end_ - buf_pos_ < need) {
    if (buf_pos_ > 0) {
      std::memmove(buf_.data(), buf_.data() + buf_pos_, buf_end_ - buf_pos_);
      buf_end_ -= buf_pos_;
      buf_pos_ = 0;
    }
    // Grow only when full, doubling up to what the frame needs: memory follows the bytes
    // that arrived, never a length the peer merely announced.
    if (buf_end_ == buf_.size())
      resize_buffer(
          std::min(std::max(need, kInitialBuffer), std::max(kInitialBuffer, 2 * buf_.size())));
    // With a deadline, read first and poll only when nothing is there; without one, one
    // blocking recv (SO_RCVTIMEO, if set, ends it): one system call per frame either way.
    ssize_t r =
        ::recv(fd_.get(), buf_.data() + buf_end_, buf_.size() - buf_end_, deadline ? MSG_DONTWAIT : 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!deadline) throw TimeoutError("no data within the connection's receive timeout");
      wait_ready(fd_.get(), POLLIN, deadline, "waiting for a frame");
      continue;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_os_error(errno, "receiving a frame");
    }
    if (r == 0) {
      if (!frame_started && buf_end_ == buf_pos_) throw EOFError("");
      throw EOFError("the peer closed the connection inside a frame");
    }
    buf_end_ += static_cast<std::size_t>(r);
  }
}

std::optional<std::string> Connection::recv_bytes(std::size_t max_length, Deadline deadline) {
  if (!fd_) throw OSError(EBADF, "recv on a closed connection");
  try {
    fill(4, deadline, false);
  } catch (const EOFError& e) {
    if (std::string_view(e.what()).empty()) return std::nullopt;
    throw;
  }
  auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(buf_[buf_pos_ + k]); };
  std::int32_t n32 =
      static_cast<std::int32_t>((std::uint32_t{byte(0)} << 24) | (std::uint32_t{byte(1)} << 16) |
                                (std::uint32_t{byte(2)} << 8) | byte(3));
  std::uint64_t n;
  std::size_t plen = 4;
  if (n32 == -1) {
    fill(12, deadline, true);
    n = 0;
    for (std::size_t k = 4; k < 12; ++k) n = (n << 8) | byte(k);
    plen = 12;
  } else if (n32 < 0) {
    throw DecodeError("bad frame: negative length " + std::to_string(n32));
  } else {
    n = static_cast<std::uint64_t>(n32);
  }
  if (n > max_length)
    throw DecodeError("frame of " + std::to_string(n) + " bytes refused: the limit is " +
                      std::to_string(max_length) + " bytes");
  buf_pos_ += plen;
  auto len = static_cast<std::size_t>(n);
  fill(len, deadline, true);
  std::string out;
  if (len > kKeptBuffer && buf_pos_ == 0 && buf_end_ == len) {
    // A large frame that fills the buffer is handed over, not copied.
    if (budget_) budget_->give_back(charged(buf_.size()));
    out = std::move(buf_);
    out.resize(len);
    buf_ = std::string();
    buf_pos_ = buf_end_ = 0;
    return out;
  }
  out = buf_.substr(buf_pos_, len);
  buf_pos_ += len;
  if (buf_pos_ == buf_end_) {
    buf_pos_ = buf_end_ = 0;
    if (buf_.size() > kKeptBuffer) resize_buffer(0);  // after a large frame
  }
  return out;
}

std::string hmac_digest(std::string_view name, std::string_view key, std::string_view message) {
  const EVP_MD* md = digest_by_python_name(name);
  if (!md) throw ValueError("unsupported digest '" + std::string(name) + "'");
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(md, key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &len))
    throw OSError(EIO, "OpenSSL HMAC failed");
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string new_challenge() { return "{sha256}" + random_bytes(40); }

bool verify_answer(std::string_view message, std::string_view answer, std::string_view authkey,
                   bool allow_legacy) {
  if (answer.size() == 16)
    return allow_legacy && equal_ct(answer, hmac_digest("md5", authkey, message));
  if (answer.size() <= 2 || answer[0] != '{') return false;
  auto close = answer.find('}');
  if (close == std::string_view::npos || close > 20) return false;
  std::string name(answer.substr(1, close - 1));
  return digest_by_python_name(name) &&
         equal_ct(answer.substr(close + 1), hmac_digest(name, authkey, message));
}

std::string answer_for(std::string_view frame, std::string_view authkey) {
  if (frame.substr(0, kChallenge.size()) != kChallenge)
    throw AuthenticationError("protocol error: expected a #CHALLENGE# message");
  std::string_view message = frame.substr(kChallenge.size());
  if (message.size() == 20 || message.size() == 16) return hmac_digest("md5", authkey, message);
  auto close = message.find('}');
  if (message.size() < 20 || message[0] != '{' || close == std::string_view::npos || close > 20)
    throw AuthenticationError("protocol error: malformed challenge");
  std::string name(message.substr(1, close - 1));
  if (!digest_by_python_name(name))
    throw AuthenticationError("protocol error: the challenge asks for the unsupported digest '" +
                              name + "'");
  return "{" + name + "}" + hmac_digest(name, authkey, message);
}

void deliver_challenge(Connection& c, std::string_view authkey, Deadline deadline,
                       bool allow_legacy) {
  std::string message = new_challenge();
  c.send_bytes(std::string(kChallenge) + message, deadline);
  auto answer = c.recv_bytes(kHandshakeMaxFrame, deadline);
  if (!answer) throw AuthenticationError("the peer closed the connection during authentication");
  if (!verify_answer(message, *answer, authkey, allow_legacy)) {
    c.send_bytes(kFailure, deadline);
    throw AuthenticationError("digest received was wrong");
  }
  c.send_bytes(kWelcome, deadline);
}

void answer_challenge(Connection& c, std::string_view authkey, Deadline deadline) {
  auto frame = c.recv_bytes(kHandshakeMaxFrame, deadline);
  if (!frame) throw AuthenticationError("the peer closed the connection during authentication");
  c.send_bytes(answer_for(*frame, authkey), deadline);
  auto result = c.recv_bytes(kHandshakeMaxFrame, deadline);
  if (!result || *result != kWelcome) throw AuthenticationError("digest sent was rejected");
}

}  // namespace mpp::net
