// The manager server and client of mpp::net.
//
// Threading model: Boost.Asio accepts and runs every handshake without blocking (one
// io_context, run by serve_forever's thread), so strangers cost a socket and a few hundred
// bytes each, never a thread; at most max_unauthenticated of them wait, the oldest is closed
// first, and each has auth_timeout to finish. Once a peer has authenticated, its socket gets
// a thread of its own that serves that connection's requests, as Python's server does. That
// is what the protocol needs: a Python client keeps one connection per proxy thread and
// blocks inside calls such as queue.get(timeout), so a call may block its own connection but
// never another.
#include "mpp/net/manager.hpp"

#include <openssl/crypto.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_set>

#include "mpp/detail/os/child.hpp"
#include "mpp/net/pickle.hpp"

namespace mpp::net {
namespace detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

PyObject reply(const char* kind, PyObject value) { return py_tuple(kind, std::move(value)); }

PyObject traceback(const std::string& type, const std::string& message) {
  // Python prints the text a #TRACEBACK carries; its last line is "Type: message".
  return reply("#TRACEBACK", "Traceback (most recent call last):\n  (served by mpp)\n" + type +
                                 ": " + message + "\n");
}

struct Referent {
  std::shared_ptr<Servable> object;
  std::unordered_set<std::string> exposed;
  std::string typeid_;
  std::size_t refcount = 0;
};

struct ServerState;

// One connection in the handshake, driven by the io_context's thread (as in Python's
// multiprocessing.connection, the server challenges, checks the answer, then answers the
// peer's challenge). Every frame is read with its exact length, so nothing after the
// handshake is read here.
struct Pending : std::enable_shared_from_this<Pending> {
  Pending(tcp::socket s, asio::io_context& io) : sock(std::move(s)), timer(io) {}
  tcp::socket sock;
  asio::steady_timer timer;
  std::list<std::shared_ptr<Pending>>::iterator pos;  // in ServerState::pending
  std::string peer;
  std::string challenge;  // the message we sent, without kChallenge
  unsigned char prefix[4]{};
  std::string in, out;  // the frame being read, the frame being written (with prefix)
  bool closed = false;
};

struct ServerState : std::enable_shared_from_this<ServerState> {
  std::string authkey;
  ManagerOptions options;
  std::shared_ptr<BufferBudget> budget;

  std::map<std::string, std::function<std::shared_ptr<Servable>()>> registry;

  std::mutex mu;  // guards referents
  std::map<std::string, Referent> referents;

  asio::io_context io;
  std::optional<tcp::acceptor> acceptor;
  // Only the io_context's thread touches these (and serve_forever once io has stopped).
  // Declared after `io`, so destroyed before it.
  std::list<std::shared_ptr<Pending>> pending;  // oldest first
  std::optional<asio::steady_timer> accept_retry;
  std::size_t dropped_unauthenticated = 0;
  Clock::time_point last_drop_log{};
  Address bound;
  bool stopped = false;

  std::mutex conns_mu;  // guards live, active, stopping
  std::condition_variable idle_cv;
  std::set<Connection*> live;
  std::size_t active = 0;
  bool stopping = false;

  void log(const std::string& line) {
    if (options.log)
      options.log(line);
    else
      std::fprintf(stderr, "mpp.net server: %s\n", line.c_str());
  }

  // Stops accepting and ends every connection: their blocked reads return, blocked calls
  // are interrupted. A call in progress still sends its reply (only reading is shut down):
  // the client whose put() let the master finish and shut down must still hear that it was
  // done. Safe from any thread, including a connection's own.
  void stop() {
    {
      std::lock_guard lock(conns_mu);
      if (stopping) return;
      stopping = true;
      for (auto* c : live) c->shutdown_read();
    }
    {
      std::lock_guard lock(mu);
      for (auto& [id, r] : referents) r.object->interrupt();
    }
    io.stop();
  }

  // The handler holds a weak reference: it is stored in `io`, which this state owns, and a
  // strong one would keep the state alive for ever.
  void accept_next(const std::shared_ptr<ServerState>& self) {
    std::weak_ptr<ServerState> weak = self;
    acceptor->async_accept([weak](const boost::system::error_code& ec, tcp::socket sock) {
      auto s = weak.lock();
      if (!s || ec == asio::error::operation_aborted) return;
      if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
        // Out of file descriptors: free the oldest stranger's, or wait a little, then go on.
        if (!s->pending.empty()) {
          s->drop_oldest("the process has no file descriptor left");
          s->accept_next(s);
        } else {
          s->accept_retry.emplace(s->io, std::chrono::milliseconds(100));
          s->accept_retry->async_wait([weak](const boost::system::error_code& e) {
            auto s2 = weak.lock();
            if (s2 && !e) s2->accept_next(s2);
          });
        }
        return;
      }
      if (!ec) s->begin_handshake(std::move(sock));
      s->accept_next(s);
    });
  }

  void close_pending(const std::shared_ptr<Pending>& p) {
    if (p->closed) return;
    p->closed = true;
    boost::system::error_code ignored;
    p->timer.cancel();
    p->sock.close(ignored);
    pending.erase(p->pos);
  }

  // Closes the connection that has waited longest in the handshake; logs at most one line a
  // second (with the count), so that a flood does not flood the log too.
  void drop_oldest(const char* why) {
    auto victim = pending.front();  // a copy: close_pending erases the list's
    close_pending(victim);
    ++dropped_unauthenticated;
    auto now = Clock::now();
    if (now - last_drop_log >= std::chrono::seconds(1)) {
      last_drop_log = now;
      log("closed " + std::to_string(dropped_unauthenticated) +
          " unauthenticated connection(s), oldest first: " + why);
      dropped_unauthenticated = 0;
    }
  }

  void begin_handshake(tcp::socket sock) {
    if (stopping_now()) return;
    while (!pending.empty() &&
           pending.size() >= std::max<std::size_t>(options.max_unauthenticated, 1))
      drop_oldest(
          ("more than " + std::to_string(options.max_unauthenticated) + " are in the handshake")
              .c_str());
    auto p = std::make_shared<Pending>(std::move(sock), io);
    boost::system::error_code ec;
    auto ep = p->sock.remote_endpoint(ec);
    p->peer = ec ? std::string("?") : ep.address().to_string() + ":" + std::to_string(ep.port());
    p->pos = pending.insert(pending.end(), p);
    std::weak_ptr<Pending> weak = p;
    p->timer.expires_after(options.auth_timeout);
    p->timer.async_wait([this, weak](const boost::system::error_code& e) {
      auto q = weak.lock();
      if (e || !q || q->closed) return;
      log("closed the connection from " + q->peer + ": no handshake within " +
          std::to_string(options.auth_timeout.count()) + " ms");
      close_pending(q);
    });
    try {
      p->challenge = new_challenge();
    } catch (const std::exception& e) {
      log(std::string("cannot make a challenge: ") + e.what());
      close_pending(p);
      return;
    }
    write_frame(
        p, std::string(kChallenge) + p->challenge, [this](const std::shared_ptr<Pending>& q) {
          read_frame(q, [this](const std::shared_ptr<Pending>& q) {
            bool ok = verify_answer(q->challenge, q->in, authkey, options.allow_legacy_auth);
            write_frame(q, std::string(ok ? kWelcome : kFailure),
                        [this, ok](const std::shared_ptr<Pending>& q) {
                          if (!ok) return reject(q, "digest received was wrong");
                          read_frame(q, [this](const std::shared_ptr<Pending>& q) {
                            std::string answer;
                            try {
                              answer = answer_for(q->in, authkey);
                            } catch (const AuthenticationError& e) {
                              return reject(q, e.what());
                            }
                            write_frame(q, answer, [this](const std::shared_ptr<Pending>& q) {
                              read_frame(q, [this](const std::shared_ptr<Pending>& q) {
                                if (q->in != kWelcome) return reject(q, "digest sent was rejected");
                                authenticated(q);
                              });
                            });
                          });
                        });
          });
        });
  }

  // Never sends traceback text to an unauthenticated peer (Python's server does).
  void reject(const std::shared_ptr<Pending>& p, const std::string& why) {
    log("rejected the connection from " + p->peer + ": " + why);
    close_pending(p);
  }

  template <class Next>
  void write_frame(const std::shared_ptr<Pending>& p, const std::string& payload, Next next) {
    auto n = static_cast<std::uint32_t>(payload.size());
    p->out.assign({static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                   static_cast<char>(n >> 8), static_cast<char>(n)});
    p->out += payload;
    asio::async_write(p->sock, asio::buffer(p->out),
                      [this, p, next](const boost::system::error_code& ec, std::size_t) {
                        if (p->closed) return;
                        if (ec) return close_pending(p);
                        next(p);
                      });
  }

  // Reads one frame of at most kHandshakeMaxFrame bytes into p->in (as Python's handshake
  // does; a longer or negative length closes the connection).
  template <class Next>
  void read_frame(const std::shared_ptr<Pending>& p, Next next) {
    asio::async_read(p->sock, asio::buffer(p->prefix),
                     [this, p, next](const boost::system::error_code& ec, std::size_t) {
                       if (p->closed) return;
                       if (ec) return close_pending(p);
                       std::uint32_t n = (std::uint32_t{p->prefix[0]} << 24) |
                                         (std::uint32_t{p->prefix[1]} << 16) |
                                         (std::uint32_t{p->prefix[2]} << 8) | p->prefix[3];
                       if (n > kHandshakeMaxFrame)
                         return reject(p, "a handshake frame of bad length " +
                                              std::to_string(static_cast<std::int32_t>(n)));
                       p->in.assign(n, '\0');
                       asio::async_read(
                           p->sock, asio::buffer(p->in),
                           [this, p, next](const boost::system::error_code& ec, std::size_t) {
                             if (p->closed) return;
                             if (ec) return close_pending(p);
                             next(p);
                           });
                     });
  }

  void authenticated(const std::shared_ptr<Pending>& p) {
    boost::system::error_code ec;
    p->timer.cancel();
    p->sock.non_blocking(false, ec);
    p->sock.native_non_blocking(false, ec);
    int fd = p->sock.release(ec);
    p->closed = true;
    pending.erase(p->pos);
    if (ec || fd < 0) return;
    spawn(mpp::detail::os::Fd(fd), p->peer);
  }

  bool stopping_now() {
    std::lock_guard lock(conns_mu);
    return stopping;
  }

  void spawn(mpp::detail::os::Fd fd, const std::string& peer) {
    {
      std::lock_guard lock(conns_mu);
      if (stopping || active >= options.max_connections) {
        fd.reset();
        if (!stopping)
          log("refused the connection from " + peer + ": " + std::to_string(active) +
              " connections are open already");
        return;
      }
      ++active;
    }
    try {
      // A thread that cannot start destroys the lambda, and with it the descriptor.
      std::thread([self = shared_from_this(), fd = std::move(fd)]() mutable {
        self->serve_connection(fd.release());
      }).detach();
    } catch (const std::system_error& e) {
      std::lock_guard lock(conns_mu);
      --active;
      log(std::string("cannot start a connection thread: ") + e.what());
    }
  }

  void serve_connection(int fd) {
    Connection c(fd);
    c.set_budget(budget);
    {
      std::lock_guard lock(conns_mu);
      live.insert(&c);
      if (stopping) c.shutdown_read();
    }
    try {
      handle(c);
    } catch (const std::exception& e) {
      bool quiet;
      {
        std::lock_guard lock(conns_mu);
        quiet = stopping;
      }
      if (!quiet) log("dropped the connection from " + c.peer_name() + ": " + e.what());
    }
    // Free OpenSSL's per-thread state now: once `active` drops, serve_forever may return and
    // the process exit while this detached thread's TLS destructors have yet to run.
    OPENSSL_thread_stop();
    std::lock_guard lock(conns_mu);
    live.erase(&c);
    if (--active == 0) idle_cv.notify_all();
  }

  // Serves an authenticated connection: its one manager request, then (after
  // accept_connection) its proxy calls.
  void handle(Connection& c) {
    auto deadline = deadline_after(options.handshake_timeout);
    auto frame = c.recv_bytes(options.max_frame, deadline);
    if (!frame) return;
    Tuple req;
    PyObject out;
    try {
      req = request_of(*frame);
    } catch (const std::exception& e) {
      c.send_bytes(pickle(traceback("ValueError", std::string("bad request: ") + e.what())),
                   deadline);
      return;
    }
    if (!req.items[0].is<None>()) {
      c.send_bytes(pickle(traceback("ValueError",
                                    "the first request of a connection must be a manager request")),
                   deadline);
      return;
    }
    const std::string& method = req.items[1].get<std::string>();
    out = manager_call(method, req.items[2].get<Tuple>());
    c.send_bytes(pickle(out), deadline);
    if (method == "accept_connection" && out.get<Tuple>().items[0] == PyObject("#RETURN"))
      serve_client(c);
    if (method == "shutdown") stop();
  }

  // (ident, method, args, kwds), checked.
  Tuple request_of(const std::string& frame) {
    PyObject v = unpickle(frame);
    if (!v.is<Tuple>()) throw ValueError("a request must be a tuple, got " + v.type_name());
    auto& t = v.get<Tuple>();
    if (t.items.size() != 4 || !(t.items[0].is<None>() || t.items[0].is<std::string>()) ||
        !t.items[1].is<std::string>() || !t.items[2].is<Tuple>() || !t.items[3].is<Dict>())
      throw ValueError("a request must be (ident, methodname, args, kwds), got " +
                       repr(v).substr(0, 200));
    return std::move(t);
  }

  PyObject manager_call(const std::string& method, const Tuple& args) {
    auto ident_arg = [&]() -> std::string {
      if (args.items.size() != 1 || !args.items[0].is<std::string>())
        throw ValueError(method + " needs (ident,)");
      return args.items[0].get<std::string>();
    };
    try {
      if (method == "dummy" || method == "accept_connection") return reply("#RETURN", None{});
      if (method == "create") {
        if (args.items.empty() || !args.items[0].is<std::string>())
          throw ValueError("create needs (typeid,)");
        auto& typeid_ = args.items[0].get<std::string>();
        auto it = registry.find(typeid_);
        if (it == registry.end()) return traceback("KeyError", repr(typeid_));
        if (args.items.size() > 1)
          return traceback("TypeError", typeid_ + " takes no arguments from mpp's server");
        std::shared_ptr<Servable> obj = it->second();
        if (!obj)
          return traceback("ValueError",
                           "the callable registered as " + typeid_ + " returned no object");
        char ident[32];
        std::snprintf(ident, sizeof ident, "%llx",
                      static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(obj.get())));
        Tuple exposed;
        for (auto& n : obj->exposed()) exposed.items.emplace_back(n);
        std::lock_guard lock(mu);
        auto& r = referents[ident];
        if (!r.object) {
          r.object = obj;
          r.exposed.insert(obj->exposed().begin(), obj->exposed().end());
          r.typeid_ = typeid_;
        }
        ++r.refcount;
        return reply("#RETURN", py_tuple(std::string(ident), exposed));
      }
      if (method == "incref" || method == "decref") {
        std::string ident = ident_arg();
        std::lock_guard lock(mu);
        auto it = referents.find(ident);
        if (it == referents.end()) return traceback("KeyError", repr(ident));
        if (method == "incref")
          ++it->second.refcount;
        else if (--it->second.refcount == 0)
          referents.erase(it);
        return reply("#RETURN", None{});
      }
      if (method == "get_methods") {
        if (args.items.size() != 1 || !args.items[0].is<Token>())
          throw ValueError("get_methods needs (token,)");
        std::lock_guard lock(mu);
        auto it = referents.find(args.items[0].get<Token>().id);
        if (it == referents.end())
          return traceback("KeyError", repr(args.items[0].get<Token>().id));
        Tuple t;
        for (auto& n : it->second.object->exposed()) t.items.emplace_back(n);
        return reply("#RETURN", t);
      }
      if (method == "number_of_objects") {
        std::lock_guard lock(mu);
        return reply("#RETURN", referents.size());
      }
      if (method == "debug_info") {
        std::lock_guard lock(mu);
        std::string s;
        for (auto& [id, r] : referents)
          s += "  " + id + ": refcount=" + std::to_string(r.refcount) + "\n    " + r.typeid_ + "\n";
        return reply("#RETURN", s);
      }
      if (method == "shutdown") return reply("#RETURN", None{});
      return traceback("ValueError", repr(method) + " unrecognized");
    } catch (const std::exception& e) {
      return traceback("ValueError", e.what());
    }
  }

  void serve_client(Connection& c) {
    c.set_recv_timeout(options.idle_timeout);  // a socket option, not a poll per request
    while (true) {
      auto frame = c.recv_bytes(options.max_frame);
      if (!frame) return;
      PyObject out;
      try {
        Tuple req = request_of(*frame);
        if (!req.items[0].is<std::string>()) throw ValueError("a proxy call needs an ident");
        const std::string& ident = req.items[0].get<std::string>();
        const std::string& method = req.items[1].get<std::string>();
        std::shared_ptr<Servable> obj;
        bool is_exposed = false;
        {
          std::lock_guard lock(mu);
          auto it = referents.find(ident);
          if (it != referents.end()) {
            obj = it->second.object;
            is_exposed = it->second.exposed.count(method) > 0;
          }
        }
        if (!obj) {
          out = traceback("KeyError", repr(ident) + " is not a live object of this manager");
        } else if (is_exposed) {
          try {
            out = reply("#RETURN",
                        obj->call(method, req.items[2].get<Tuple>(), req.items[3].get<Dict>()));
          } catch (...) {
            out = reply("#ERROR", to_exception_value(std::current_exception()));
          }
        } else if (method == "#GETVALUE") {
          auto v = obj->value();
          out = v ? reply("#RETURN", *v)
                  : reply("#UNSERIALIZABLE", "this object has no value to send");
        } else if (method == "__repr__" || method == "__str__") {
          out = reply("#RETURN", "<mpp object " + ident + ">");
        } else {
          out = traceback("AttributeError",
                          "method " + repr(method) + " of " + repr(ident) + " is not exposed");
        }
      } catch (const std::exception& e) {
        // The frame was read whole, so the stream is still in step: answer and go on.
        out = traceback("ValueError", std::string("unsupported request: ") + e.what());
      }
      std::string bytes;
      try {
        bytes = pickle(out);
      } catch (const std::exception& e) {
        bytes = pickle(reply("#UNSERIALIZABLE", e.what()));
      }
      c.send_bytes(bytes, deadline_after(options.handshake_timeout));
    }
  }
};

Connection open_connection(const ClientConfig& c) {
  Connection conn = Connection::connect(c.host, c.port, c.handshake_timeout);
  auto deadline = deadline_after(c.handshake_timeout);
  answer_challenge(conn, c.authkey, deadline);
  deliver_challenge(conn, c.authkey, deadline);
  return conn;
}

PyObject roundtrip(Connection& conn, const PyObject& request, std::size_t max_frame,
                   Deadline deadline) {
  conn.send_bytes(pickle(request), deadline);
  auto frame = conn.recv_bytes(max_frame, deadline);
  if (!frame) throw EOFError("the manager closed the connection instead of answering");
  PyObject v;
  try {
    v = unpickle(*frame);
  } catch (const DecodeError& e) {
    throw UnpicklingError(
        std::string("cannot decode the manager's reply (its raw pickle is in data()): ") + e.what(),
        std::move(*frame));
  }
  if (!v.is<Tuple>() || v.get<Tuple>().items.size() != 2 ||
      !v.get<Tuple>().items[0].is<std::string>())
    throw DecodeError("the manager sent a reply that is not (kind, result): " +
                      repr(v).substr(0, 200));
  auto& items = v.get<Tuple>().items;
  const std::string& kind = items[0].get<std::string>();
  if (kind == "#RETURN") return std::move(items[1]);
  if (kind == "#ERROR") {
    if (items[1].is<ExceptionValue>()) raise_exception_value(items[1].get<ExceptionValue>());
    throw RemoteError("Exception", repr(items[1]));
  }
  std::string text = items[1].is<std::string>() ? items[1].get<std::string>() : repr(items[1]);
  if (kind == "#TRACEBACK") {
    // The last line of a Python traceback is "Type: message".
    std::string last = text;
    while (!last.empty() && last.back() == '\n') last.pop_back();
    last = last.substr(last.rfind('\n') == std::string::npos ? 0 : last.rfind('\n') + 1);
    auto colon = last.find(": ");
    std::string type = colon == std::string::npos ? "RemoteError" : last.substr(0, colon);
    throw RemoteError(type, text);
  }
  if (kind == "#UNSERIALIZABLE") throw RemoteError("Unserializable message", text);
  throw DecodeError("the manager sent an unknown reply kind " + repr(kind));
}

PyObject manager_request(const ClientConfig& c, const std::string& method, Tuple args) {
  Connection conn = open_connection(c);
  return roundtrip(conn, py_tuple(None{}, method, std::move(args), Dict{}), c.max_frame,
                   deadline_after(c.handshake_timeout));
}

}  // namespace detail

// ----- BaseProxy -------------------------------------------------------------------------

struct BaseProxy::State {
  std::shared_ptr<const detail::ClientConfig> config;
  std::string typeid_, ident;
  std::vector<std::string> exposed;
  std::mutex mu;
  std::optional<Connection> conn;
};

BaseProxy::BaseProxy(std::shared_ptr<const detail::ClientConfig> config, std::string typeid_,
                     std::string ident, std::vector<std::string> exposed)
    : s_(std::make_unique<State>()) {
  s_->config = std::move(config);
  s_->typeid_ = std::move(typeid_);
  s_->ident = std::move(ident);
  s_->exposed = std::move(exposed);
}
BaseProxy::BaseProxy(BaseProxy&&) noexcept = default;
BaseProxy& BaseProxy::operator=(BaseProxy&& o) noexcept {
  if (this != &o) {
    BaseProxy old(std::move(*this));
    s_ = std::move(o.s_);
  }
  return *this;
}

BaseProxy::~BaseProxy() {
  if (!s_) return;
  s_->conn.reset();
  try {
    detail::manager_request(*s_->config, "decref", Tuple{{s_->ident}});
  } catch (...) {
    // The server may be gone already (after shutdown); the reference then died with it.
  }
}

PyObject BaseProxy::call_method(const std::string& method, Tuple args, Dict kwds,
                                Deadline deadline) {
  std::lock_guard lock(s_->mu);
  const auto& cfg = *s_->config;
  if (!s_->conn) {
    Connection c = detail::open_connection(cfg);
    detail::roundtrip(c, py_tuple(None{}, "accept_connection", Tuple{{"MainProcess"}}, Dict{}),
                      cfg.max_frame, deadline_after(cfg.handshake_timeout));
    s_->conn.emplace(std::move(c));
  }
  try {
    return detail::roundtrip(*s_->conn,
                             py_tuple(s_->ident, method, std::move(args), std::move(kwds)),
                             cfg.max_frame, deadline);
  } catch (const TimeoutError&) {
    s_->conn.reset();  // a late reply would be read as the next call's
    throw;
  } catch (const OSError&) {
    s_->conn.reset();
    throw;
  } catch (const EOFError&) {
    s_->conn.reset();
    throw;
  }
}

PyObject BaseProxy::get_value() { return call_method("#GETVALUE"); }
const std::string& BaseProxy::typeid_() const { return s_->typeid_; }
const std::string& BaseProxy::ident() const { return s_->ident; }
const std::vector<std::string>& BaseProxy::exposed() const { return s_->exposed; }

// ----- BaseManager -----------------------------------------------------------------------

BaseManager::BaseManager(Address address, std::string authkey, ManagerOptions options)
    : address_(std::move(address)),
      client_(std::make_shared<detail::ClientConfig>()),
      server_(std::make_shared<detail::ServerState>()) {
  client_->host = address_.host;
  client_->port = address_.port;
  client_->authkey = authkey;
  client_->handshake_timeout = options.handshake_timeout;
  client_->max_frame = options.max_frame;
  server_->authkey = std::move(authkey);
  server_->budget = std::make_shared<BufferBudget>(options.max_buffer_memory);
  server_->options = std::move(options);
}

BaseManager::~BaseManager() {
  if (child_pid_ > 0) {
    try {
      shutdown();
    } catch (...) {
    }
  }
}

void BaseManager::register_(const std::string& typeid_,
                            std::function<std::shared_ptr<Servable>()> callable) {
  server_->registry[typeid_] = std::move(callable);
}

void BaseManager::register_(const std::string& typeid_, std::shared_ptr<Servable> object) {
  register_(typeid_, [object] { return object; });
}

Address BaseManager::listen() {
  auto& s = *server_;
  if (!s.acceptor) {
    using detail::tcp;
    boost::system::error_code ec;
    auto addr = boost::asio::ip::make_address(address_.host, ec);
    if (ec) {
      tcp::resolver resolver(s.io);
      auto results = resolver.resolve(address_.host, "", ec);
      if (ec || results.empty())
        throw OSError(EHOSTUNREACH, "cannot resolve " + address_.host + ": " + ec.message());
      addr = results.begin()->endpoint().address();
    }
    tcp::endpoint ep(addr, address_.port);
    tcp::acceptor acc(s.io);
    acc.open(ep.protocol());
    acc.set_option(tcp::acceptor::reuse_address(true));
    acc.bind(ep, ec);
    if (ec)
      throw_os_error(ec.value(),
                     "cannot listen on " + address_.host + ":" + std::to_string(address_.port));
    acc.listen(128);
    address_.port = acc.local_endpoint().port();
    client_->port = address_.port;
    s.acceptor.emplace(std::move(acc));
  }
  return address_;
}

void BaseManager::serve_forever() {
  listen();
  auto s = server_;
  s->accept_next(s);
  s->io.run();
  s->stop();
  boost::system::error_code ec;
  s->acceptor->close(ec);
  while (!s->pending.empty()) {
    auto p = s->pending.front();
    s->close_pending(p);
  }
  s->accept_retry.reset();
  // Wait for the connection threads (their sockets are shut down and blocked calls
  // interrupted, so they end promptly); a call stuck in user code is given 5 s.
  std::unique_lock lock(s->conns_mu);
  s->idle_cv.wait_for(lock, std::chrono::seconds(5), [&] { return s->active == 0; });
}

void BaseManager::start() {
  if (child_pid_ > 0) throw ProcessError("this manager has started its server already");
  mpp::detail::os::PipeFds ready = mpp::detail::os::make_pipe("starting a manager's server");
  pid_t pid = mpp::detail::os::fork_child(true);
  if (pid < 0) throw_os_error(errno, "fork");
  if (pid == 0) {
    ready.read.reset();
    std::string msg;
    try {
      Address a = listen();
      msg = std::to_string(a.port) + "\n";
      (void)!::write(ready.write.get(), msg.data(), msg.size());
      ready.write.reset();
      serve_forever();
      ::_exit(0);
    } catch (const std::exception& e) {
      msg = std::string("!") + e.what() + "\n";
      (void)!::write(ready.write.get(), msg.data(), msg.size());
      ::_exit(1);
    }
  }
  ready.write.reset();
  std::string line;
  char buf[256];
  ssize_t n;
  while ((n = ::read(ready.read.get(), buf, sizeof buf)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    line.append(buf, static_cast<std::size_t>(n));
    if (line.find('\n') != std::string::npos) break;
  }
  ready.read.reset();
  if (line.empty() || line[0] == '!' || line.find('\n') == std::string::npos) {
    int status;
    ::waitpid(pid, &status, 0);
    throw OSError(EADDRNOTAVAIL,
                  "the manager's server process could not start: " +
                      (line.size() > 1 ? line.substr(1, line.size() - 2) : "it exited"));
  }
  address_.port = static_cast<std::uint16_t>(std::stoi(line));
  client_->port = address_.port;
  child_pid_ = pid;
}

void BaseManager::shutdown() {
  if (child_pid_ > 0) {
    pid_t pid = std::exchange(child_pid_, -1);
    try {
      detail::manager_request(*client_, "shutdown", {});
    } catch (...) {
    }
    for (int i = 0; i < 500; ++i) {
      int status;
      pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid || (r < 0 && errno == ECHILD)) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid, SIGKILL);
    int status;
    ::waitpid(pid, &status, 0);
    return;
  }
  server_->stop();
}

void BaseManager::connect() { detail::manager_request(*client_, "dummy", {}); }

BaseProxy BaseManager::proxy(const std::string& typeid_) {
  PyObject r = detail::manager_request(*client_, "create", Tuple{{typeid_}});
  auto [ident, exposed] = from_py<std::tuple<std::string, std::vector<std::string>>>(r);
  return BaseProxy(client_, typeid_, std::move(ident), std::move(exposed));
}

}  // namespace mpp::net
