// Several machines, as network namespaces: a Redis server in one namespace, a producer and
// consumers in two others, each joined to the server's namespace by its own veth pair
// (10.77.0.0/30 and 10.77.0.4/30), so their traffic crosses real interfaces and can be cut.
// Needs root with CAP_NET_ADMIN and iproute2; elsewhere it prints SKIPPED (the other Redis
// tests run the same protocol as processes on loopback).
#include <sched.h>

#include <catch2/catch.hpp>
#include <mpp/redis/queue.hpp>

#include "redis/redis_support.hpp"
#include "support/child.hpp"

using namespace std::chrono_literals;
using mpp::redis::Queue;
using mpp::test::Child;

namespace {

int run(const std::string& cmd) { return system((cmd + " >/dev/null 2>&1").c_str()); }

// Three namespaces (server, a, b) with veth pairs server<->a and server<->b, removed by the
// destructor (deleting a namespace deletes the veth ends inside it).
struct Network {
  std::string tag = std::to_string(getpid());
  std::string server = "mpp-s-" + tag, a = "mpp-a-" + tag, b = "mpp-b-" + tag;
  std::string a_link = "mva" + tag, b_link = "mvb" + tag;  // the client ends (< 16 chars)
  bool ok = false;

  Network() {
    if (geteuid() != 0 || run("command -v ip") != 0) return;
    if (run("ip netns add " + server) != 0) return;
    ok = run("ip netns add " + a) == 0 && run("ip netns add " + b) == 0 &&
         link(a, a_link, "10.77.0.1", "10.77.0.2") && link(b, b_link, "10.77.0.5", "10.77.0.6");
  }
  ~Network() {
    for (auto& ns : {server, a, b}) run("ip netns del " + ns);
  }
  bool link(const std::string& ns, const std::string& dev, const std::string& server_ip,
            const std::string& ip) {
    std::string peer = dev + "s";
    return run("ip link add " + dev + " type veth peer name " + peer) == 0 &&
           run("ip link set " + dev + " netns " + ns) == 0 &&
           run("ip link set " + peer + " netns " + server) == 0 &&
           run("ip -n " + server + " addr add " + server_ip + "/30 dev " + peer) == 0 &&
           run("ip -n " + server + " link set " + peer + " up") == 0 &&
           run("ip -n " + server + " link set lo up") == 0 &&
           run("ip -n " + ns + " addr add " + ip + "/30 dev " + dev) == 0 &&
           run("ip -n " + ns + " link set " + dev + " up") == 0;
  }
};

// Moves the calling (forked, single-threaded) process into namespace `ns`.
void enter(const std::string& ns) {
  int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) _exit(95);
  close(fd);
}

int read_int(int fd) {
  int v;
  ssize_t n;
  do n = read(fd, &v, sizeof v);
  while (n < 0 && errno == EINTR);
  if (n != sizeof v) throw std::runtime_error("short read from a child");
  return v;
}

}  // namespace

TEST_CASE("three machines: a producer and a consumer in other namespaces than the server, "
          "a consumer cut off from the network has its message taken over") {
  if (!mpp::test::have_redis_server()) return;
  Network net;
  if (!net.ok) {
    std::cout << "SKIPPED: cannot make network namespaces here (needs root with "
                 "CAP_NET_ADMIN and iproute2); the loopback tests cover the protocol\n";
    return;
  }
  mpp::test::RedisServer server({"--requirepass", "netpw"}, "0.0.0.0", net.server);
  const std::string port = std::to_string(server.port());
  const std::string url_a = "redis://:netpw@10.77.0.1:" + port + "/0";
  const std::string url_b = "redis://:netpw@10.77.0.5:" + port + "/0";
  constexpr int total = 500;
  mpp::redis::QueueOptions o;
  o.visibility_timeout = 1s;

  // Machine a produces; machine b consumes and reports what it got.
  int results[2];
  REQUIRE(pipe(results) == 0);
  Child producer([&](int) {
    enter(net.a);
    Queue<int> q(url_a, "jobs");
    std::vector<int> all(total);
    for (int i = 0; i < total; ++i) all[i] = i;
    q.put_many(all);
  });
  Child consumer([&](int) {
    enter(net.b);
    Queue<int> q(url_b, "jobs", o);
    for (int i = 0; i < total; ++i) {
      int v = q.get();
      q.task_done();
      if (write(results[1], &v, sizeof v) != sizeof v) _exit(96);
    }
  });
  std::vector<int> seen(total, 0);
  for (int i = 0; i < total; ++i) ++seen.at(read_int(results[0]));
  CHECK(producer.exit_code() == 0);
  CHECK(consumer.exit_code() == 0);
  CHECK(std::count(seen.begin(), seen.end(), 1) == total);

  // Machine b takes a message, then loses its network; machine a's consumer gets it after
  // b's lease expired.
  Child put_one([&](int) {
    enter(net.a);
    Queue<int> q(url_a, "jobs");
    q.put(4242);
  });
  REQUIRE(put_one.exit_code() == 0);
  Child cut_off([&](int ready) {
    enter(net.b);
    Queue<int> q(url_b, "jobs", o);
    int v = q.get();
    if (write(results[1], &v, sizeof v) != sizeof v) _exit(96);
    mpp::test::signal_ready(ready);
    pause();  // never acknowledges
  });
  REQUIRE(read_int(results[0]) == 4242);
  REQUIRE(run("ip -n " + net.b + " link set " + net.b_link + " down") == 0);
  Child takeover([&](int) {
    enter(net.a);
    Queue<int> q(url_a, "jobs", o);
    int v = q.get(30s);
    q.task_done();
    if (write(results[1], &v, sizeof v) != sizeof v) _exit(96);
  });
  CHECK(read_int(results[0]) == 4242);
  CHECK(takeover.exit_code() == 0);
  cut_off.kill_and_reap();
  close(results[0]);
  close(results[1]);
}
