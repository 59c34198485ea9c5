// mpp's client and server against real CPython managers (Debian's /usr/bin/python3): what
// CPython really sends for dict views and slices, and an undecodable queue item that is not
// lost. Skipped (with a warning) where /usr/bin/python3 is missing.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <string>

#include "mpp/net/manager.hpp"
#include "mpp/net/pickle.hpp"
#include "support/command.hpp"

using namespace mpp::net;

namespace {

const char* kPython = "/usr/bin/python3";

std::string peer_script() {
  return (std::filesystem::path(__FILE__).parent_path() / "net_python_peer.py").string();
}

bool have_python() {
  if (::access(kPython, X_OK) == 0) return true;
  WARN("no " << kPython << ": skipped");
  return false;
}

// A Python manager server (net_python_peer.py serve) for the test's duration.
struct PythonServer {
  FILE* out = nullptr;
  std::uint16_t port = 0;
  PythonServer() {
    out = ::popen((std::string(kPython) + " -u " + peer_script() + " serve").c_str(), "r");
    REQUIRE(out);
    char line[128] = {};
    REQUIRE(std::fgets(line, sizeof line, out));
    REQUIRE(std::string(line).rfind("listening ", 0) == 0);
    port = static_cast<std::uint16_t>(std::stoi(line + 10));
  }
  ~PythonServer() {
    detail::ClientConfig c;
    c.host = "127.0.0.1";
    c.port = port;
    c.authkey = "abc";
    try {
      detail::manager_request(c, "shutdown", {});
    } catch (...) {
    }
    ::pclose(out);  // the script also exits by itself after 30 s
  }
};

}  // namespace

TEST_CASE("keys(), values() and items() of a dict served by Python") {
  if (!have_python()) return;
  PythonServer py;
  BaseManager m({"127.0.0.1", py.port}, "abc");
  auto d = m.dict<std::string, std::int64_t>("get_dict");
  CHECK(d.keys() == std::vector<std::string>{"a", "b", "c"});
  CHECK(d.values() == std::vector<std::int64_t>{1, 2, 3});
  CHECK(d.items() ==
        std::vector<std::pair<std::string, std::int64_t>>{{"a", 1}, {"b", 2}, {"c", 3}});
  CHECK(d.size() == 3);
}

TEST_CASE(
    "an item of a Python queue that cannot be decoded is not lost: the error carries its pickle") {
  if (!have_python()) return;
  PythonServer py;
  BaseManager m({"127.0.0.1", py.port}, "abc");
  auto q = m.queue<std::int64_t>("get_queue");
  CHECK(q.get() == 5);
  try {
    q.get();
    FAIL("a datetime.date was decoded");
  } catch (const UnpicklingError& e) {
    CHECK_THAT(e.what(), Catch::Contains("datetime"));
    // The raw reply as Python pickled it: ('#RETURN', datetime.date(2024, 1, 2)).
    CHECK(e.data().find("datetime") != std::string::npos);
    CHECK(e.data().find("#RETURN") != std::string::npos);
  }
  CHECK(q.get() == 7);  // the connection is still in step
}

TEST_CASE("a Python client slices a list served by mpp") {
  if (!have_python()) return;
  auto list = std::make_shared<LocalList>();
  BaseManager server({"127.0.0.1", 0}, "abc");
  server.register_("get_list", list);
  for (int v : {10, 20, 30, 40}) list->object().append(PyObject(v));
  server.start();
  auto r = mpp::test::run_command(std::string(kPython) + " -u " + peer_script() + " client " +
                                  std::to_string(server.address().port));
  server.shutdown();
  CHECK(r.status == 0);
  CHECK(r.out == "slices [10, 20] [30, 40] [10, 30] [40, 30] []\n");
}
