// mpp-inspect against live segments and against garbage. The tool is run as users run it
// (a separate program, its text and JSON output parsed); the reader is also fed thousands
// of mutated segment images, which must each give a clean answer or a clean error.
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "dump.hpp"
#include "mpp/detail/process_identity.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/detail/segment_tracker.hpp"
#include "mpp/manager.hpp"
#include "segment_reader.hpp"
#include "support/child.hpp"
#include "support/command.hpp"

namespace json = boost::json;
using mpp::detail::ObjectHeader;
using mpp::detail::ObjectKind;
using mpp::detail::Segment;

namespace {

using Run = mpp::test::CommandResult;

// Runs mpp-inspect with `args`; its stdout is captured, stderr goes to the test log.
Run inspect(const std::string& args) {
  return mpp::test::run_command(std::string(MPP_INSPECT_BIN) + " " + args);
}

std::string unique_name(const char* what) {
  return "mpp_inspect_test_" + std::string(what) + "_" + std::to_string(getpid());
}

// An object whose state is just the common header: enough for the directory and locks.
ObjectHeader& make_object(Segment& seg, const std::string& name, ObjectKind kind,
                          const std::string& key, const std::string& value) {
  auto [mem, created] = seg.find_or_create(
      {name, kind, key, value, sizeof(ObjectHeader), alignof(ObjectHeader)},
      [](void* p) { new (p) ObjectHeader(); });
  (void)created;
  return *static_cast<ObjectHeader*>(mem);
}

// Removes the files it names when the test ends, however it ends.
struct Unlinker {
  std::vector<std::string> paths;
  ~Unlinker() {
    for (const auto& p : paths) unlink(p.c_str());
  }
};

struct Point {
  int x, y;
};

bool shm_exists(const std::string& name) { return access(("/dev/shm/" + name).c_str(), F_OK) == 0; }

}  // namespace

TEST_CASE("list and show report a live segment's objects, in text and JSON") {
  const std::string name = unique_name("show");
  mpp::Manager m(name, 1 << 20);
  auto d = m.dict<std::string, long>("counts");
  d.set("a", 1);
  d.set("b", 2);
  d.set("c", 3);
  m.list<std::string>("jobs").append("x");

  Run list = inspect("list");
  CHECK(list.status == 0);
  CHECK(list.out.find(name) != std::string::npos);

  Run show = inspect("show " + name + " --json");
  REQUIRE(show.status == 0);
  auto j = json::parse(show.out).as_object();
  CHECK(j["name"].as_string() == name);
  CHECK(j["creator_pid"].as_int64() == getpid());
  CHECK(j["creator_alive"].as_bool());
  auto& objs = j["object_list"].as_array();
  REQUIRE(objs.size() == 2);
  auto& counts = objs[0].as_object();
  CHECK(counts["name"].as_string() == "counts");
  CHECK(counts["kind"].as_string() == "dict");
  CHECK(counts["key_type"].as_string() == "std::string");
  CHECK(counts["count"].as_int64() == 3);
  CHECK(counts["lock"].as_object()["state"].as_string() == "free");

  Run text = inspect("show " + name);
  CHECK(text.status == 0);
  CHECK(text.out.find("counts") != std::string::npos);
  CHECK(text.out.find("list") != std::string::npos);

  Run check = inspect("check " + name);
  CHECK(check.status == 0);
  CHECK(check.out.find("sound") != std::string::npos);
}

TEST_CASE("list and show find anonymous segments through /proc, with their owner") {
  mpp::Manager m;  // a memfd: in no directory
  auto d = m.dict<std::string, long>("anon-counts");
  d.set("a", 1);
  mpp::test::Child user([&](int ready_fd) {  // a second process mapping it
    d.set("b", 2);
    mpp::test::signal_ready(ready_fd);
    pause();
  });
  REQUIRE(user.wait_ready());

  Run list = inspect("list --json");
  REQUIRE(list.status == 0);
  std::string found;
  const json::value listed = json::parse(list.out);
  for (const auto& v : listed.at("segments").as_array()) {
    const auto& seg = v.as_object();
    if (seg.at("creator_pid").as_int64() != getpid() ||
        !json::value_to<std::string>(seg.at("name")).starts_with("memfd:")) {
      continue;
    }
    found = json::value_to<std::string>(seg.at("name"));
    CHECK(seg.at("objects").as_int64() == 1);
    CHECK(seg.at("creator_alive").as_bool());
    std::vector<std::int64_t> mappers;
    for (const auto& p : seg.at("mapped_by").as_array()) mappers.push_back(p.as_int64());
    CHECK(std::find(mappers.begin(), mappers.end(), getpid()) != mappers.end());
    CHECK(std::find(mappers.begin(), mappers.end(), user.pid()) != mappers.end());
  }
  REQUIRE_FALSE(found.empty());
  Run show = inspect("show " + found);
  CHECK(show.status == 0);
  CHECK(show.out.find("anon-counts") != std::string::npos);
  CHECK(show.out.find("by pid " + std::to_string(getpid())) != std::string::npos);
  Run dump = inspect("dump " + found + " anon-counts");
  CHECK(dump.status == 0);
  CHECK(dump.out.find("\"b\": 2") != std::string::npos);
  user.kill_and_reap();
}

TEST_CASE("dump prints dicts, lists, queues, values and arrays from their type names") {
  const std::string name = unique_name("dump");
  mpp::Manager m(name, 1 << 20);
  auto d = m.dict<std::string, long>("counts");
  d.set("apple", 3);
  d.set("pear", -7);
  auto l = m.list<std::string>("words");
  l.append("hello");
  l.append(std::string("tab\there", 8));
  auto pts = m.list<Point>("points");  // a user's trivially copyable type: shown as hex
  pts.append({1, 2});

  Run text = inspect("dump " + name + " counts");
  REQUIRE(text.status == 0);
  CHECK(text.out.find("\"apple\": 3") != std::string::npos);
  CHECK(text.out.find("\"pear\": -7") != std::string::npos);

  auto j = json::parse(inspect("dump " + name + " words --json").out).as_object();
  auto& rows = j["entries"].as_array();
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].as_object()["value"].as_string() == "\"hello\"");
  CHECK(rows[1].as_object()["value"].as_string() == "\"tab\\x09here\"");

  Run hexed = inspect("dump " + name + " points");
  CHECK(hexed.out.find("Point [8 bytes] 0100000002000000") != std::string::npos);

  // A value replaced by one of its length lives in the node's other room: dump shows the
  // current one, whichever room holds it.
  auto notes = m.dict<std::string, std::string>("notes");
  notes.set("first", std::string(40, 'a'));
  notes.set("second", std::string(40, 'a'));
  notes.set("second", std::string(40, 'b'));  // now in the second room
  notes.set("second", std::string(40, 'c'));  // back in the first
  notes.set("first", std::string(40, 'd'));   // in the second
  Run rooms = inspect("dump " + name + " notes");
  CHECK(rooms.out.find("\"first\": \"" + std::string(40, 'd') + "\"") != std::string::npos);
  CHECK(rooms.out.find("\"second\": \"" + std::string(40, 'c') + "\"") != std::string::npos);

  auto q = m.queue<std::string>("jobs");
  q.put("first");
  q.put(std::string(100000, 'z'));  // large enough to live in a heap block, not the ring
  q.put("third");
  (void)q.get();
  auto jq = json::parse(inspect("dump " + name + " jobs --json").out).as_object();
  auto& qrows = jq["entries"].as_array();
  REQUIRE(qrows.size() == 2);
  CHECK(std::string(qrows[0].as_object()["value"].as_string()).substr(0, 5) == "\"zzzz");
  CHECK(qrows[1].as_object()["value"].as_string() == "\"third\"");
  auto shown = json::parse(inspect("show " + name + " --json").out).as_object();
  // A queue takes no lock (its slots' claims name their processes): no get lock to show.
  bool saw_queue = false;
  for (auto& ob : shown["object_list"].as_array()) {
    if (ob.as_object()["name"].as_string() != "jobs") continue;
    saw_queue = ob.as_object()["kind"].as_string() == "queue";
    CHECK_FALSE(ob.as_object().contains("get_lock"));
  }
  CHECK(saw_queue);

  auto v = m.value<double>("ratio", 0.25);
  CHECK(inspect("dump " + name + " ratio").out.find("0.25") != std::string::npos);
  auto arr = m.array<int>("grid", 4);
  arr[2] = 42;
  auto ja = json::parse(inspect("dump " + name + " grid --json").out).as_object();
  REQUIRE(ja["entries"].as_array().size() == 4);
  CHECK(ja["entries"].as_array()[2].as_object()["value"].as_string() == "42");

  for (int i = 0; i < 30; ++i) d.set("k" + std::to_string(i), i);
  auto limited = json::parse(inspect("dump " + name + " counts --limit 5 --json").out).as_object();
  CHECK(limited["entries"].as_array().size() == 5);
  CHECK(limited["truncated"].as_bool());
  CHECK(inspect("dump " + name + " nothing").status == 3);
  CHECK(inspect("check " + name).status == 0);
}

TEST_CASE("watch refreshes until its count and follows changes") {
  const std::string name = unique_name("watch");
  mpp::Manager m(name, 1 << 20);
  m.dict<int, int>("d").set(1, 1);
  Run r = inspect("watch " + name + " --interval 0.05 --count 3 --json");
  REQUIRE(r.status == 0);
  std::istringstream lines(r.out);
  std::string line;
  int snapshots = 0;
  while (std::getline(lines, line)) {
    auto j = json::parse(line).as_object();
    CHECK(j["object_list"].as_array()[0].as_object()["count"].as_int64() == 1);
    ++snapshots;
  }
  CHECK(snapshots == 3);
  Run text = inspect("watch " + name + " --interval 0.05 --count 2");
  CHECK(text.status == 0);
  CHECK(text.out.find("mpp-inspect watch " + name) != std::string::npos);
  CHECK(inspect("watch " + name + " --interval -1").status == 2);
}

TEST_CASE("a lock held by a SIGKILLed process is named as held by a dead pid") {
  const std::string name = unique_name("deadlock");
  auto seg = Segment::create(name, 1 << 20);
  auto& obj = make_object(*seg, "guarded", ObjectKind::lock, "", "");
  mpp::test::Child holder([&](int ready) {
    obj.mutex.lock();
    mpp::test::signal_ready(ready);
    pause();
  });
  REQUIRE(holder.wait_ready());
  const pid_t dead = holder.pid();

  // While it lives: held by a live pid, and the tool does not block on the held lock.
  auto live = json::parse(inspect("show " + name + " --json").out).as_object();
  auto& l1 = live["object_list"].as_array()[0].as_object()["lock"].as_object();
  CHECK(l1["state"].as_string() == "held");
  CHECK(l1["holder_pid"].as_int64() == dead);
  CHECK(l1["holder_alive"].as_bool());

  holder.kill_and_reap();
  auto after = json::parse(inspect("show " + name + " --json").out).as_object();
  auto& l2 = after["object_list"].as_array()[0].as_object()["lock"].as_object();
  CHECK(l2["holder_pid"].as_int64() == dead);
  CHECK_FALSE(l2["holder_alive"].as_bool());
  Run text = inspect("show " + name);
  CHECK(text.out.find("DEAD") != std::string::npos);
  Run check = inspect("check " + name);
  CHECK(check.status == 1);
  CHECK(check.out.find("dead pid " + std::to_string(dead)) != std::string::npos);

  // The next locker recovers it; the tool then sees a free lock and one recovery.
  CHECK(obj.mutex.lock());
  obj.mutex.unlock();
  auto healed = json::parse(inspect("show " + name + " --json").out).as_object();
  auto& l3 = healed["object_list"].as_array()[0].as_object()["lock"].as_object();
  CHECK(l3["state"].as_string() == "free");
  CHECK(l3["recoveries"].as_int64() == 1);
  CHECK(inspect("check " + name).status == 0);
}

TEST_CASE("a dict stripe held by a SIGKILLed writer is named as held by a dead pid") {
  const std::string name = unique_name("deadstripe");
  auto seg = Segment::create(name, 1 << 20);
  auto d = mpp::Dict<std::string, long>::open(seg, "counts");
  d.set("a", 1);
  mpp::test::Child holder([&](int ready) {
    // modify holds the key's stripe while its function runs.
    d.modify("a", [&](long&) {
      mpp::test::signal_ready(ready);
      pause();
    });
  });
  REQUIRE(holder.wait_ready());
  const pid_t dead = holder.pid();
  holder.kill_and_reap();
  auto after = json::parse(inspect("show " + name + " --json").out).as_object();
  auto& l = after["object_list"].as_array()[0].as_object()["lock"].as_object();
  CHECK(l["holder_pid"].as_int64() == dead);
  CHECK_FALSE(l["holder_alive"].as_bool());
  Run check = inspect("check " + name);
  CHECK(check.status == 1);
  CHECK(check.out.find("dead pid " + std::to_string(dead)) != std::string::npos);

  // A write of the same key recovers the stripe; the tool then sees it free.
  d.set("a", 2);
  CHECK(d.at("a") == 2);
  auto healed = json::parse(inspect("show " + name + " --json").out).as_object();
  auto& l2 = healed["object_list"].as_array()[0].as_object()["lock"].as_object();
  CHECK(l2["state"].as_string() == "free");
  CHECK(l2["recoveries"].as_int64() == 1);
  CHECK(inspect("check " + name).status == 0);
}

TEST_CASE("a dead holder whose pid now names another live process is still shown DEAD") {
  const std::string name = unique_name("reused");
  auto seg = Segment::create(name, 1 << 20);
  auto& obj = make_object(*seg, "guarded", ObjectKind::lock, "", "");
  mpp::test::Child holder([&](int ready) {
    obj.mutex.lock();
    mpp::test::signal_ready(ready);
    pause();
  });
  REQUIRE(holder.wait_ready());
  holder.kill_and_reap();
  mpp::test::Child other([](int ready) {
    mpp::test::signal_ready(ready);
    pause();
  });
  REQUIRE(other.wait_ready());
  // As if the kernel had given the dead holder's pid to `other`: the recorded pid (right
  // after the pthread mutex) now names a live process, and the recorded start ticks (after
  // the pid) are another tick than other's (both children may start within one tick).
  const std::int32_t reused = other.pid();
  const auto ticks = static_cast<std::uint32_t>(mpp::detail::process_start_ticks(other.pid()) + 1);
  char* recorded = reinterpret_cast<char*>(&obj.mutex) + sizeof(pthread_mutex_t);
  std::memcpy(recorded, &reused, sizeof reused);
  std::memcpy(recorded + sizeof reused, &ticks, sizeof ticks);
  auto shown = json::parse(inspect("show " + name + " --json").out).as_object();
  auto& l = shown["object_list"].as_array()[0].as_object()["lock"].as_object();
  CHECK(l["holder_pid"].as_int64() == reused);
  CHECK_FALSE(l["holder_alive"].as_bool());
  CHECK(obj.mutex.lock());  // the kernel knows the real holder died: recovered
  obj.mutex.unlock();
}

TEST_CASE("gc removes only segments whose creator is dead and that nobody maps") {
  const std::string prefix = unique_name("gc");
  const std::string orphan = prefix + "_orphan", mapped = prefix + "_mapped",
                    mine = prefix + "_mine";
  auto alive = Segment::create(mine, 1 << 18);
  Unlinker cleanup{{"/dev/shm/" + orphan, "/dev/shm/" + mapped}};
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  // A creator that makes two segments, keeps them (persist off: it dies without cleaning up),
  // and dies by SIGKILL after its segment tracker was SIGKILLed too (else the tracker would
  // remove them: this is the leak that only a kill of both leaves); then a second process
  // keeps `mapped` mapped.
  mpp::test::SharedMapping<std::atomic<pid_t>> tracker(0);
  mpp::test::Child creator([&](int fd) {
    auto a = Segment::create(orphan, 1 << 18);
    auto b = Segment::create(mapped, 1 << 18);
    *tracker = mpp::detail::segment_tracker_pid();
    mpp::test::signal_ready(fd);
    pause();
  });
  REQUIRE(creator.wait_ready());
  REQUIRE(*tracker > 0);
  int tracker_fd = static_cast<int>(syscall(SYS_pidfd_open, tracker->load(), 0));
  REQUIRE(tracker_fd >= 0);
  REQUIRE(kill(*tracker, SIGKILL) == 0);
  pollfd tracker_ended{tracker_fd, POLLIN, 0};
  REQUIRE(poll(&tracker_ended, 1, 10'000) == 1);  // it is gone before its creator is
  close(tracker_fd);
  creator.kill_and_reap();
  mpp::test::Child mapper([&](int fd) {
    auto b = Segment::attach(mapped);
    mpp::test::signal_ready(fd);
    pause();
  });
  REQUIRE(mapper.wait_ready());

  auto dry = json::parse(inspect("gc " + prefix + " --dry-run --json").out).as_object();
  auto& would = dry["would_remove"].as_array();
  REQUIRE(would.size() == 1);
  CHECK(would[0].as_string() == orphan);
  CHECK(dry["kept"].as_array().size() == 2);
  CHECK(shm_exists(orphan));

  Run gc = inspect("gc " + prefix);
  CHECK(gc.status == 0);
  CHECK_FALSE(shm_exists(orphan));
  CHECK(shm_exists(mapped));
  CHECK(shm_exists(mine));

  // rm refuses a mapped segment unless forced.
  CHECK(inspect("rm " + mapped).status == 1);
  CHECK(shm_exists(mapped));
  mapper.kill_and_reap();
  CHECK(inspect("rm " + mapped).status == 0);
  CHECK_FALSE(shm_exists(mapped));
  close(ready[0]);
  close(ready[1]);
}

TEST_CASE("garbage, empty, truncated and missing files get a clear message and exit code") {
  const std::string base = "/dev/shm/" + unique_name("garbage");
  Unlinker cleanup{{base + "_empty", base + "_random", base + "_truncated"}};
  {
    std::ofstream(base + "_empty");
    std::ofstream f(base + "_random", std::ios::binary);
    std::mt19937 rng(7);
    for (int i = 0; i < 100000; ++i) f.put(static_cast<char>(rng()));
  }
  auto seg = Segment::create(unique_name("trunc"), 1 << 18);
  {
    // A real segment cut short: the header claims more than the file holds.
    std::ifstream in("/dev/shm/" + unique_name("trunc"), std::ios::binary);
    std::string head(4096, '\0');
    in.read(head.data(), 4096);
    std::ofstream(base + "_truncated", std::ios::binary) << head;
  }
  for (const char* suffix : {"_empty", "_random", "_truncated"}) {
    std::string path = base + suffix;
    for (const char* cmd : {"show", "check", "dump"}) {
      Run r = inspect(std::string(cmd) + " " + path + (std::strcmp(cmd, "dump") == 0 ? " x" : ""));
      INFO(cmd << " " << path << ": " << r.out);
      CHECK(r.status == 4);
    }
    unlink(path.c_str());
  }
  CHECK(inspect("show no_such_segment_anywhere").status == 3);
  CHECK(inspect("show").status == 2);
  CHECK(inspect("frobnicate").status == 2);
  CHECK(inspect("--help").status == 0);
}

TEST_CASE("the reader survives thousands of mutated segment images") {
  // A real segment image with a few objects, then random bytes, runs and fields overwritten
  // in its header, directory and heap header: every read must end in a result or an
  // InspectError. Run under ASan, an out-of-bounds read fails the test.
  auto seg = Segment::anonymous(64 * 1024, 8);
  auto m = mpp::detail::Access::make<mpp::Manager>(seg);
  auto d = m.dict<std::string, long>("d");
  for (int i = 0; i < 20; ++i) d.set("key" + std::to_string(i), i);
  d.erase("key3");
  auto l = m.list<std::string>("l");
  for (int i = 0; i < 20; ++i) l.append(std::string(static_cast<std::size_t>(i), 'x'));
  make_object(*seg, "e", ObjectKind::event, "", "");
  auto q = m.queue<std::string>("q");
  for (int i = 0; i < 10; ++i) q.put(std::string(static_cast<std::size_t>(i * 300), 'q'));
  (void)q.get();
  std::vector<std::byte> pristine(seg->size());
  std::memcpy(pristine.data(), seg->at(0), seg->size());
  // Mutate where the structure is: header, directory, heap header and the used heap.
  const auto& heap = *reinterpret_cast<const mpp::detail::HeapHeader*>(
      static_cast<const char*>(seg->at(0)) + seg->header().heap_offset);
  const std::size_t hot = heap.top.load();

  std::mt19937_64 rng(12345);
  int readable = 0, refused = 0;
  for (int i = 0; i < 5000; ++i) {
    std::vector<std::byte> img = pristine;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      std::size_t at = rng() % hot;
      switch (rng() % 3) {
        case 0: img[at] = static_cast<std::byte>(rng()); break;
        case 1: {  // a plausible-looking 64-bit field
          std::uint64_t v = rng() % 4 == 0 ? ~std::uint64_t{0} - rng() % 64 : rng() % (2 * img.size());
          std::size_t a8 = at & ~std::size_t{7};
          if (a8 + 8 <= img.size()) std::memcpy(&img[a8], &v, 8);
          break;
        }
        default: std::memset(&img[at], static_cast<int>(rng() & 0xff), std::min<std::size_t>(64, img.size() - at));
      }
    }
    try {
      auto info = mpp::inspect::read_image(img.data(), img.size(), "mutant", true);
      for (const auto& o : info.objects) {
        if (!o.problem.empty()) continue;
        (void)mpp::inspect::dump_object(img.data(), img.size(), o, 10);
        (void)mpp::inspect::check_object(img.data(), img.size(), o);
      }
      ++readable;
    } catch (const mpp::inspect::InspectError& e) {
      CHECK(e.code() == 4);
      ++refused;
    }
  }
  CHECK(readable > 0);
  CHECK(refused > 0);
}

TEST_CASE("show and dump give a queue's exact depth, for several depths") {
  const std::string name = unique_name("depth");
  mpp::Manager m(name, 1 << 20);
  auto q = m.queue<int>("depth");
  int next = 0, first = 0;  // the queue holds first .. next-1
  for (int want : {0, 1, 2, 3, 63, 64, 65, 100, 7}) {
    while (next - first < want) q.put(next++);
    while (next - first > want) CHECK(q.get_nowait() == first++);
    INFO("queue depth " << want);
    REQUIRE(q.qsize() == static_cast<std::size_t>(want));

    auto shown = json::parse(inspect("show " + name + " --json").out).as_object();
    bool found = false;
    for (auto& ob : shown["object_list"].as_array()) {
      if (ob.as_object()["name"].as_string() != "depth") continue;
      found = true;
      CHECK(ob.as_object()["count"].to_number<std::int64_t>() == want);
    }
    CHECK(found);

    // The text table: OBJECT KIND TYPES ELEMENTS ...
    std::istringstream table(inspect("show " + name).out);
    std::string line;
    found = false;
    while (std::getline(table, line)) {
      std::istringstream cols(line);
      std::string obj, kind, types;
      long elements = -1;
      if (cols >> obj >> kind >> types >> elements && obj == "depth") {
        found = true;
        CHECK(elements == want);
      }
    }
    CHECK(found);

    const Run dumped = inspect("dump " + name + " depth");
    CHECK(dumped.out.find("queue 'depth' (int), " + std::to_string(want) + " element(s)") != std::string::npos);
    auto dj = json::parse(inspect("dump " + name + " depth --json --limit 1000").out).as_object();
    CHECK(dj["count"].to_number<std::int64_t>() == want);
    auto& rows = dj["entries"].as_array();
    REQUIRE(rows.size() == static_cast<std::size_t>(want));
    for (int i = 0; i < want; ++i) CHECK(rows[i].as_object()["value"].as_string() == std::to_string(first + i));
  }
}
