// mpp::net::BaseManager: Python's multiprocessing.managers.BaseManager over TCP, wire
// compatible with Python 3.7-3.13, so C++ and Python processes can
// serve and use the same queues, dicts, lists and values.
//
// Serving side:                               Client side:
//   BaseManager m({"127.0.0.1", 5000}, "abc");   BaseManager m({"127.0.0.1", 5000}, "abc");
//   m.register_("get_task_queue", queue);        m.connect();
//   m.start();          // forks the server      auto task =
//   m.queue<std::int64_t>("get_task_queue");
//   ...                                          auto n = task.get(std::chrono::seconds(1));
//   m.shutdown();
//
// Deployment boundary: anyone who has the authkey can run code in every *Python* peer (they
// unpickle everything), and the stream is neither encrypted nor integrity-protected after
// the handshake. Use loopback, a private link or a tunnel, and a long random authkey.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mpp/net/connection.hpp"
#include "mpp/net/exceptions.hpp"
#include "mpp/net/proxy.hpp"
#include "mpp/net/pyobject.hpp"
#include "mpp/net/servable.hpp"

namespace mpp::net {

// Where a manager listens or connects. Port 0 when serving picks a free port (see address()).
struct Address {
  std::string host = "127.0.0.1";  // a name or an address; loopback by default
  std::uint16_t port = 0;          // 0: any free port (serving side only)
};

// A manager's limits and logging, server side and client side (each field says which).
// The defaults suit a LAN; the server's limits are what Python's server lacks.
struct ManagerOptions {
  // Largest frame accepted after the handshake (during it, 256 bytes as in Python).
  std::size_t max_frame = kDefaultMaxFrame;
  // Client side: deadline for connecting and for the whole handshake. Both sides: deadline
  // for the single request of a manager-level connection (create, incref, ...).
  std::chrono::milliseconds handshake_timeout{10000};
  // Server side: how long a peer has to complete the handshake (3 round trips) after it
  // connected; it is then closed. Short, so that idle or slow strangers leave quickly.
  std::chrono::milliseconds auth_timeout{3000};
  // Server side: connections still in the handshake, all driven by the one accepting thread
  // (no thread each). When one more arrives, the oldest is closed: a stranger cannot keep a
  // legitimate client out by opening connections, only slow it by one handshake.
  std::size_t max_unauthenticated = 256;
  // How long the server keeps a proxy connection that sends no request; 0 = for ever.
  // Python clients never reconnect, so keep it longer than any worker's pause.
  std::chrono::milliseconds idle_timeout{std::chrono::hours(1)};
  // Authenticated connections served at once (a thread each); one more is closed once its
  // handshake succeeds (and logged).
  std::size_t max_connections = 512;
  // Server side: receive-buffer memory of all connections together. A buffer grows only as
  // a frame's bytes arrive; a frame that would need more than is left is refused and its
  // connection closed (logged), the others go on.
  std::size_t max_buffer_memory = std::size_t{256} << 20;
  // Accept the raw 16-byte HMAC-MD5 answer of Python 3.11 and older clients.
  bool allow_legacy_auth = true;
  // Where the server logs rejected and failed connections; default: a line on stderr.
  std::function<void(const std::string&)> log;
};

namespace detail {
struct ServerState;
}

// Python's multiprocessing.managers.BaseManager: serves registered objects over TCP in the
// wire protocol of Python's managers (start() or serve_forever()), or connects to such a
// server, Python's or mpp's, and hands out proxies of its objects. Not copyable.
class BaseManager {
 public:
  // A manager for `address` with `authkey` (the HMAC key; use 32+ random bytes outside tests).
  BaseManager(Address address, std::string authkey, ManagerOptions options = {});
  ~BaseManager();  // shuts down a server started with start() (as Python's finalizer does)
  BaseManager(const BaseManager&) = delete;
  BaseManager& operator=(const BaseManager&) = delete;

  // ----- serving side -----
  // Python: register(typeid, callable). `callable` makes (or returns) the object a client's
  // create(typeid) gets; returning the same object every time shares it, as the tutorial
  // does. (`register` is a C++ keyword, hence the underscore.) Call before start().
  void register_(const std::string& typeid_, std::function<std::shared_ptr<Servable>()> callable);
  // Registers one shared object under `typeid_`.
  void register_(const std::string& typeid_, std::shared_ptr<Servable> object);
  // Registers an mpp shared-memory object (Queue, JoinableQueue, Dict, List, Value) under
  // `typeid_`: the server serves a handle on it, so local processes and remote peers share it.
  template <class Object>
  requires requires(const Object& o) { servable(o); }
  void register_(const std::string& typeid_, const Object& object) {
    register_(typeid_, servable(object));
  }

  // Binds and listens (idempotent); returns the address, with the port the system chose if 0.
  // Throws OSError (EADDRINUSE...). serve_forever() and start() call it.
  Address listen();
  // Serves in this thread until shutdown() (from another thread or by a client's 'shutdown'
  // request). This thread accepts and runs every handshake; each authenticated connection
  // is then served by a thread of its own.
  void serve_forever();
  // Python: start(). Forks a server process that serves the registered objects (the child's
  // copies) and returns when it listens. Fork before starting threads of your own. The child
  // dies with this process (PR_SET_PDEATHSIG). Throws OSError if the child cannot listen.
  void start();
  // Stops the server: the one started by start() (asks it, then waits for it to exit; kills it
  // after 5 s), or the serve_forever() of this object. Idempotent.
  void shutdown();
  // Pid of the server process started by start(), else -1.
  pid_t server_pid() const noexcept { return child_pid_; }

  // ----- client side -----
  // Python: connect(). Checks that the server answers and accepts the authkey. Throws
  // AuthenticationError for a wrong authkey, OSError when nothing listens.
  void connect();
  // A proxy for a new reference to the object registered as `typeid_` on the server
  // (Python: manager.<typeid>()). Throws RemoteError when the server has no such typeid.
  BaseProxy proxy(const std::string& typeid_);
  template <class T = PyObject>
  RemoteQueue<T> queue(const std::string& typeid_) {
    return RemoteQueue<T>(proxy(typeid_));
  }
  template <class K = PyObject, class V = PyObject>
  RemoteDict<K, V> dict(const std::string& typeid_) {
    return RemoteDict<K, V>(proxy(typeid_));
  }
  template <class T = PyObject>
  RemoteList<T> list(const std::string& typeid_) {
    return RemoteList<T>(proxy(typeid_));
  }
  template <class T = PyObject>
  RemoteValue<T> value(const std::string& typeid_) {
    return RemoteValue<T>(proxy(typeid_));
  }

  // The address (after listen(), with the actual port) and options.
  const Address& address() const noexcept { return address_; }

 private:
  Address address_;
  std::shared_ptr<detail::ClientConfig> client_;
  std::shared_ptr<detail::ServerState> server_;
  pid_t child_pid_ = -1;
};

}  // namespace mpp::net
