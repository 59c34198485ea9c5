// The main() of every test program, with a watchdog: each test case gets an alarm
// (MPP_TEST_ALARM seconds, default 60). A test that deadlocks is killed with a message
// that names it, instead of hanging until ctest's own timeout (which backs this up).
#define CATCH_CONFIG_MAIN
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>

namespace {

char g_current_test[512] = "(before the first test case)";

void on_alarm(int) {
  const char head[] = "\nWATCHDOG: test case '";
  const char tail[] = "' did not finish in time; a deadlock? Aborting.\n";
  (void)!write(STDERR_FILENO, head, sizeof head - 1);
  (void)!write(STDERR_FILENO, g_current_test, strnlen(g_current_test, sizeof g_current_test));
  (void)!write(STDERR_FILENO, tail, sizeof tail - 1);
  _exit(124);
}

unsigned alarm_seconds() {
  const char* s = std::getenv("MPP_TEST_ALARM");
  long v = s ? std::strtol(s, nullptr, 10) : 0;
  return v > 0 ? static_cast<unsigned>(v) : 60u;
}

struct Watchdog : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testCaseStarting(const Catch::TestCaseInfo& info) override {
    std::strncpy(g_current_test, info.name.c_str(), sizeof g_current_test - 1);
    signal(SIGALRM, on_alarm);
    alarm(alarm_seconds());
  }
  void testCaseEnded(const Catch::TestCaseStats&) override { alarm(0); }
};

}  // namespace

CATCH_REGISTER_LISTENER(Watchdog)
