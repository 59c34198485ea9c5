// Python's Popen.communicate: a child that reads commands on stdin, fed through communicate,
// like an interactive `nslookup` session ("set q=mx", "baidu.com", "exit"). So that the
// example needs no network, the interactive program is a small shell loop that reads commands
// line by line, answers each, and stops at "exit".
//
//   import subprocess
//   p = subprocess.Popen(['sh', '-c', SESSION], stdin=subprocess.PIPE,
//                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
//   output, err = p.communicate(b'set q=mx\nbaidu.com\nexit\n')
//   print(output.decode())
//   print('Exit code:', p.returncode)
#include <cstdio>

#include "mpp/subprocess.hpp"

namespace sp = mpp::subprocess;

// A tiny interactive "resolver": prompts with "> ", remembers the query type, answers a name
// with made-up MX records, and leaves on "exit" — the shape of an nslookup session.
constexpr const char* session = R"(type=a
printf 'Default server: localhost\nAddress: 127.0.0.1\n\n'
while printf '> ' && read -r line; do
  case "$line" in
    "set q="*) type=${line#set q=} ;;
    exit) exit 0 ;;
    *) echo "Server:  localhost"
       echo "Address: 127.0.0.1"
       echo
       for pref in 10 15 20; do
         echo "$line   $(echo "$type" | tr a-z A-Z) preference = $pref, mail exchanger = mx$pref.$line"
       done ;;
  esac
done)";

int main() {
  std::printf("$ nslookup (a local stand-in)\n");
  sp::Popen p({"sh", "-c", session}, {.stdin = sp::PIPE, .stdout = sp::PIPE, .stderr = sp::PIPE});
  auto [output, err] = p.communicate(std::string("set q=mx\nexample.org\nexit\n"));
  std::printf("%s\n", output->c_str());
  if (!err->empty()) std::printf("stderr: %s\n", err->c_str());
  std::printf("Exit code: %d\n", *p.returncode());
}
