// A corrupt segment never crashes or hangs a process that uses it. A seed segment holds one
// object of each kind; each case flips bits or writes garbage into a copy of it, attaches to
// the copy in a forked child and calls every read and write method of every object there.
// Each call must return or throw an mpp::Error (SegmentError for what it finds corrupt): a
// signal, a hang (the child's alarm) or another exception (bad_alloc from a corrupt length)
// fails the case, whose image is then written to a temporary directory (see KeptCases) to be kept in
// tests/data/segment_fuzz/ as a regression file; every file there is replayed first.
//
// Bytes that are lock words are left alone: a lock word that names a live thread is a lock
// held by it, and waiting for it is right, not a hang. The dict, the shared lock's reader
// slots and the segment's own structures (header, directory and its chunks, heap header, block
// headers and free-list links) are mutated only in their own test case, which then calls
// every object's methods too (they all use the heap); regression files named dict_* belong
// to it.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "mpp/detail/segment.hpp"
#include "mpp/detail/segment_tracker.hpp"
#include "mpp/detail/shared_lock.hpp"
#include "mpp/errors.hpp"
#include "mpp/manager.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using mpp::detail::Segment;

namespace {

constexpr std::size_t kSegmentBytes = 64 * 1024;

struct Range {
  std::size_t begin, end;
};

struct Seed {
  std::vector<std::byte> image;
  std::size_t hot = 0;        // bytes in use: header, directory, heap up to its top
  std::vector<Range> locks;   // pthread mutex words
  std::vector<Range> readers; // shared-lock reader slots (dict and list)
  std::vector<Range> dict;    // the dict's state (its nodes are not located)
  std::vector<Range> allocator;  // the segment's header and directory, the heap's header and
                                 // every block header
};

std::string unique(const char* what) {
  static int n = 0;
  return "mpp_fuzz_" + std::string(what) + "_" + std::to_string(getpid()) + "_" + std::to_string(n++);
}

// One of every object kind, with contents (heap messages, a grown list, a recovered lock).
Seed make_seed() {
  const std::string name = unique("seed");
  Seed s;
  {
    mpp::Manager::Options opt;
    opt.directory_entries = 8;  // fewer than the objects: the rest go to a directory chunk in the heap
    mpp::Manager m(name, kSegmentBytes, opt);
    auto d = m.dict<std::string, long>("d");
    for (int i = 0; i < 12; ++i) d.set("key" + std::to_string(i), i);
    d.erase("key3");
    // String values: short ones replaced through a node's spare room, long ones staged.
    auto ds = m.dict<std::string, std::string>("ds");
    for (std::size_t len : {3, 8, 12, 40, 100, 128, 129, 200}) ds.set("s" + std::to_string(len), std::string(len, 's'));
    ds.set("s40", std::string(40, 't'));  // its value now in the second room
    auto l = m.list<std::string>("l");
    for (int i = 0; i < 12; ++i) l.append("x" + std::to_string(i) + std::string(static_cast<std::size_t>(i), '.'));
    l.pop(2);
    auto q = m.queue<std::string>("q", 0, 4096);
    for (int i = 0; i < 5; ++i) q.put(std::string(static_cast<std::size_t>(i) * 60, 'q'));
    (void)q.get();
    auto jq = m.joinable_queue<int>("jq", 0, 2048);
    jq.put(7);
    m.value<double>("v", 2.5);
    m.value<std::array<double, 4>>("v4", {1, 2, 3, 4});  // not lock-free: two slots
    m.array<int>("a", 8)[3] = 33;
    m.lock("lock");
    m.rlock("rlock");
    m.semaphore(2, "sem");
    m.event("ev").set();
    m.condition("cond");
    m.barrier(2, "bar");
    auto& seg = *mpp::detail::Access::segment(m);
    const auto& h = seg.header();
    const auto* heap = seg.at<mpp::detail::HeapHeader>(h.heap_offset);
    s.hot = heap->top.load();
    s.locks.push_back({offsetof(mpp::detail::SegmentHeader, directory_mutex),
                       offsetof(mpp::detail::SegmentHeader, directory_mutex) + sizeof(pthread_mutex_t)});
    s.locks.push_back({h.heap_offset, h.heap_offset + sizeof(pthread_mutex_t)});
    s.allocator.push_back({h.heap_offset, h.heap_offset + sizeof(mpp::detail::HeapHeader)});
    s.allocator.push_back({0, sizeof(mpp::detail::SegmentHeader)});
    s.allocator.push_back({h.directory_offset,
                           h.directory_offset + h.directory_capacity * sizeof(mpp::detail::DirectoryEntry)});
    for (std::uint64_t b = heap->first_block; b < s.hot;) {
      const std::uint64_t word = seg.at<mpp::detail::BlockHeader>(b)->word.load();
      REQUIRE((word & mpp::detail::TAG_MASK) == mpp::detail::BLOCK_TAG);
      const std::uint64_t size = word & mpp::detail::SIZE_MASK;
      REQUIRE(size >= mpp::detail::BLOCK_HEADER_BYTES);
      // A free block's list links live in its first user bytes: allocator state too.
      const bool free = (word & mpp::detail::STATE_MASK) ==
                        static_cast<std::uint64_t>(mpp::detail::BlockState::free);
      s.allocator.push_back({b, b + mpp::detail::BLOCK_HEADER_BYTES +
                                    (free ? sizeof(mpp::detail::FreeLinks) : 0)});
      b += size;
    }
    // Every entry: the inline ones, then those of the directory chunks in the heap (whose
    // bytes are the segment's own structures too).
    std::vector<const mpp::detail::DirectoryEntry*> entries;
    for (std::uint32_t i = 0; i < h.directory_capacity; ++i) {
      entries.push_back(seg.at<mpp::detail::DirectoryEntry>(h.directory_offset + i * sizeof(mpp::detail::DirectoryEntry)));
    }
    for (std::uint64_t c = h.directory_next.load(); c != 0;) {
      const auto* chunk = seg.at<mpp::detail::DirectoryChunk>(c);
      const std::uint64_t first = c + mpp::detail::directory_chunk_entries(chunk->capacity);
      s.allocator.push_back({c, first + chunk->capacity * sizeof(mpp::detail::DirectoryEntry)});
      for (std::uint32_t i = 0; i < chunk->capacity; ++i) {
        entries.push_back(seg.at<mpp::detail::DirectoryEntry>(first + i * sizeof(mpp::detail::DirectoryEntry)));
      }
      c = chunk->next.load();
    }
    REQUIRE(h.directory_next.load() != 0);
    for (const auto* ep : entries) {
      const auto& e = *ep;
      if (e.state.load() != static_cast<std::uint32_t>(mpp::detail::EntryState::published)) continue;
      s.locks.push_back({e.object_offset, e.object_offset + sizeof(pthread_mutex_t)});
      if (e.kind == mpp::detail::ObjectKind::dict || e.kind == mpp::detail::ObjectKind::list) {
        // The reader slots follow the ObjectHeader in both states.
        const std::size_t r = e.object_offset + sizeof(mpp::detail::ObjectHeader);
        s.readers.push_back({r, r + sizeof(mpp::detail::ReaderSlots)});
      }
      if (e.kind == mpp::detail::ObjectKind::dict) s.dict.push_back({e.object_offset, e.object_offset + e.object_bytes});
    }
    s.image.resize(seg.size());
    std::memcpy(s.image.data(), seg.at(0), seg.size());
  }
  return s;
}

bool inside(const std::vector<Range>& rs, std::size_t at) {
  for (const auto& r : rs) {
    if (at >= r.begin && at < r.end) return true;
  }
  return false;
}

// Flips bits, writes random bytes, or plants a plausible 64-bit field (an offset into the
// segment, or near the top of the range), 1 to 4 times, never inside `avoid`.
std::vector<std::byte> mutate(const Seed& s, std::mt19937_64& rng, const std::vector<Range>& avoid) {
  std::vector<std::byte> img = s.image;
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    std::size_t at = rng() % s.hot;
    for (int tries = 0; inside(avoid, at) && tries < 100; ++tries) at = rng() % s.hot;
    if (inside(avoid, at)) continue;
    switch (rng() % 4) {
      case 0: img[at] ^= static_cast<std::byte>(1u << (rng() % 8)); break;
      case 1: img[at] = static_cast<std::byte>(rng()); break;
      case 2: {
        const std::uint64_t v = rng() % 4 == 0 ? ~std::uint64_t{0} - rng() % 64 : rng() % (2 * img.size());
        const std::size_t a8 = at & ~std::size_t{7};
        if (!inside(avoid, a8) && !inside(avoid, a8 + 7)) std::memcpy(&img[a8], &v, 8);
        break;
      }
      default: {  // a run of garbage
        const std::size_t n = std::min<std::size_t>(1 + rng() % 32, s.hot - at);
        for (std::size_t i = 0; i < n; ++i) {
          if (!inside(avoid, at + i)) img[at + i] = static_cast<std::byte>(rng());
        }
      }
    }
  }
  return img;
}

template <class F>
void attempt(F&& f) {
  try {
    f();
  } catch (const mpp::Error&) {
    // A clean refusal: what a corrupt object must give.
  }
}

// Every read and write method of every object but the dict.
void exercise_objects(mpp::Manager& m) {
  attempt([&] {
    auto l = m.list<std::string>("l");
    attempt([&] { (void)l.size(); });
    attempt([&] { (void)l.get(0); });
    attempt([&] { (void)l.get(-1); });
    attempt([&] { (void)l.to_vector(); });
    attempt([&] { l.for_each([](auto) {}); });
    attempt([&] { (void)l.index("x5....."); });
    attempt([&] { (void)l.count("x5....."); });
    attempt([&] { (void)l.check(); });
    attempt([&] { l.append("appended"); });
    attempt([&] { l.extend(std::vector<std::string>{"e1", "e2"}); });
    attempt([&] { l.insert(1, "inserted"); });
    attempt([&] { l.set(0, "set"); });
    attempt([&] { (void)l.pop(); });
    attempt([&] { (void)l.pop(0); });
    attempt([&] { l.remove("x7......."); });
    attempt([&] { (void)l.check(); });
    attempt([&] { l.clear(); });
    attempt([&] { (void)l.check(); });
  });
  attempt([&] {
    auto q = m.queue<std::string>("q");
    attempt([&] { (void)q.qsize(); });
    attempt([&] { (void)q.empty(); });
    attempt([&] { (void)q.full(); });
    attempt([&] { (void)q.check(); });
    attempt([&] { (void)q.get_nowait(); });
    attempt([&] { q.put_nowait("small"); });
    attempt([&] { q.put_nowait(std::string(300, 'h')); });
    for (int i = 0; i < 6; ++i) attempt([&] { (void)q.get_nowait(); });
    attempt([&] { (void)q.check(); });
  });
  attempt([&] {
    auto q = m.joinable_queue<int>("jq");
    attempt([&] { q.put_nowait(1); });
    attempt([&] { (void)q.get_nowait(); });
    attempt([&] { q.task_done(); });
    attempt([&] { q.join(1ms); });
  });
  attempt([&] {
    auto v = m.value<double>("v");
    attempt([&] { (void)v.value(); });
    attempt([&] { v.set_value(1.5); });
    attempt([&] {
      auto g = v.get_lock();
      if (g.acquire(20ms)) g.release();
    });
  });
  attempt([&] {
    auto v = m.value<std::array<double, 4>>("v4");
    attempt([&] { (void)v.value(); });
    attempt([&] { v.set_value({5, 6, 7, 8}); });
    attempt([&] { (void)v.value(); });
  });
  attempt([&] {
    auto a = m.array<int>("a", 8);
    for (long i = 0; i < 8; ++i) attempt([&] { (void)a.get(i); });
    attempt([&] { a.set(7, 1); });
    attempt([&] {
      auto g = a.get_lock();
      if (g.acquire(20ms)) g.release();
    });
  });
  attempt([&] {
    auto k = m.lock("lock");
    if (k.acquire(20ms)) k.release();
  });
  attempt([&] {
    auto k = m.rlock("rlock");
    if (k.acquire(20ms)) {
      if (k.acquire(20ms)) k.release();
      k.release();
    }
  });
  attempt([&] {
    auto s = m.semaphore(2, "sem");
    if (s.acquire(false)) s.release();
    attempt([&] { s.release(); });
  });
  attempt([&] {
    auto e = m.event("ev");
    (void)e.is_set();
    e.clear();
    (void)e.wait(1ms);
    e.set();
    (void)e.wait(1ms);
  });
  attempt([&] {
    auto c = m.condition("cond");
    if (c.acquire(20ms)) {
      attempt([&] { c.notify(); });
      attempt([&] { (void)c.wait(1ms); });
      attempt([&] { c.notify_all(); });
      c.release();
    }
  });
  attempt([&] {
    auto b = m.barrier(2, "bar");
    attempt([&] { (void)b.wait(1ms); });
    attempt([&] { b.reset(); });
    attempt([&] { b.abort(); });
  });
}

void exercise_dict(mpp::Manager& m) {
  attempt([&] {
    auto d = m.dict<std::string, long>("d");
    attempt([&] { (void)d.size(); });
    attempt([&] { (void)d.get("key5"); });
    attempt([&] { (void)d.contains("key7"); });
    attempt([&] { (void)d.keys(); });
    attempt([&] { (void)d.values(); });
    attempt([&] { (void)d.items(); });
    attempt([&] { (void)d.check(); });
    attempt([&] { d.set("new", 1); });
    attempt([&] { d.set("key1", 11); });
    attempt([&] { (void)d.erase("key2"); });
    attempt([&] { (void)d.pop("key4", 0); });
    attempt([&] { (void)d.setdefault("sd", 2); });
    attempt([&] { d.update({{"u1", 1}, {"u2", 2}}); });
    attempt([&] { (void)d.check(); });
    attempt([&] { d.clear(); });
  });
  attempt([&] {
    auto ds = m.dict<std::string, std::string>("ds");
    for (std::size_t len : {3, 8, 12, 40, 100, 128, 129, 200}) {
      const std::string key = "s" + std::to_string(len);
      attempt([&] { (void)ds.get(key); });
      attempt([&] { (void)ds.read().view(key); });
      attempt([&] { ds.set(key, std::string(len, 'n')); });  // in place: one store, spare room or staged
      attempt([&] { ds.modify(key, [](std::string& v) { v += "+"; }); });  // a new node
      attempt([&] { (void)ds.setdefault(key, "d"); });
    }
    attempt([&] { (void)ds.pop("s12"); });
    attempt([&] { (void)ds.items(); });
    attempt([&] { (void)ds.check(); });
  });
}

enum class Outcome { fine, crashed, hung, other_exception };

struct CaseResult {
  Outcome outcome = Outcome::fine;
  int signal = 0;
  std::string what;
  bool attached = false;  // the image got past attach, so its objects were called
};

// The child's exit status when attach refused the image with an mpp::Error.
constexpr int kRefusedAtAttach = 4;

// Writes `img` as the named segment /dev/shm/<name>, made through this process's segment
// tracker as the library makes its own: if this process dies before it releases the file
// (the watchdog's abort, a timeout's kill, a crash in the in-process mode), the tracker
// removes it once no process maps it. The image's persist flag is cleared (no case needs
// it, and the tracker keeps a persisted segment).
void write_case_file(const std::string& name, std::vector<std::byte> img) {
  constexpr std::size_t at = offsetof(mpp::detail::SegmentHeader, persist);
  if (img.size() >= at + sizeof(std::uint32_t)) std::memset(img.data() + at, 0, sizeof(std::uint32_t));
  const int fd = mpp::detail::open_tracked_segment(name, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, img.data(), img.size()) == static_cast<ssize_t>(img.size()));
  close(fd);
}

// Runs one image in a forked child (which attaches to it as a named segment). With
// MPP_FUZZ_IN_PROCESS set in the environment, runs it in this process instead (to debug one
// case: a crash then stops the test where it happens).
CaseResult run_case(const std::vector<std::byte>& img, bool dict) {
  const std::string name = unique("case");
  write_case_file(name, img);
  if (std::getenv("MPP_FUZZ_IN_PROCESS")) {
    try {
      auto m = mpp::Manager::attach(name);
      if (dict) exercise_dict(m);
      exercise_objects(m);
    } catch (const mpp::Error&) {
    }
    mpp::detail::release_created_segment(name);
    return {};
  }
  int msg[2];
  REQUIRE(pipe(msg) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(msg[0]);
    // The test framework's fatal-signal handlers would report from the child: let the
    // signal end it, for the parent to see; the same for the watchdog's SIGALRM, which here
    // means a hang (the calls above wait milliseconds each).
    for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGALRM}) signal(sig, SIG_DFL);
    alarm(3);
    try {
      std::optional<mpp::Manager> m;
      try {
        m.emplace(mpp::Manager::attach(name));
      } catch (const mpp::Error&) {
        _exit(kRefusedAtAttach);
      }
      // With the segment's own structures damaged, every object can meet it (the heap).
      if (dict) exercise_dict(*m);
      exercise_objects(*m);
    } catch (const mpp::Error&) {
    } catch (const std::exception& e) {
      (void)!write(msg[1], e.what(), std::min<std::size_t>(strlen(e.what()), 200));
      _exit(3);
    }
    _exit(0);
  }
  close(msg[1]);
  CaseResult r;
  char buf[256];
  ssize_t got = read(msg[0], buf, sizeof buf);
  close(msg[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  mpp::detail::release_created_segment(name);
  r.attached = true;
  if (WIFSIGNALED(st)) {
    r.signal = WTERMSIG(st);
    r.outcome = r.signal == SIGALRM ? Outcome::hung : Outcome::crashed;
  } else if (WEXITSTATUS(st) == 3) {
    r.outcome = Outcome::other_exception;
    r.what = std::string(buf, got > 0 ? static_cast<std::size_t>(got) : 0);
  } else if (WEXITSTATUS(st) == kRefusedAtAttach) {
    return r;
  } else if (WEXITSTATUS(st) != 0) {
    r.outcome = Outcome::crashed;
    r.what = "exit status " + std::to_string(WEXITSTATUS(st));
  }
  return r;
}

std::string describe(const CaseResult& r) {
  switch (r.outcome) {
    case Outcome::fine: return "fine";
    case Outcome::crashed: return "crashed (signal " + std::to_string(r.signal) + ") " + r.what;
    case Outcome::hung: return "hung";
    default: return "threw a non-mpp exception: " + r.what;
  }
}

fs::path regression_dir() {
  if (const char* d = std::getenv("MPP_FUZZ_DIR")) return d;  // replay another directory
  return fs::path(__FILE__).parent_path() / "data" / "segment_fuzz";
}

// A number from the environment (to run a case longer or with another seed), or `fallback`.
std::uint64_t env_or(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

// Where a fuzz run writes its failing images: a fresh temporary directory, made at the first
// failure and named in the failure message (a passing run makes none), never the tree.
class KeptCases {
 public:
  ~KeptCases() {
    std::error_code ec;
    if (!dir_.empty() && fs::is_empty(dir_, ec)) fs::remove(dir_, ec);
  }
  std::string keep(const std::vector<std::byte>& img, const std::string& label) {
    if (dir_.empty()) {
      std::string tmpl = (fs::temp_directory_path() / "mpp_segment_fuzz_XXXXXX").string();
      if (mkdtemp(tmpl.data()) == nullptr) return "(not kept: mkdtemp failed)";
      dir_ = tmpl;
    }
    const fs::path file = dir_ / (label + ".seg");
    std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(img.data()),
                                                static_cast<std::streamsize>(img.size()));
    return file.string();
  }

 private:
  fs::path dir_;
};

// Runs random cases for at most `budget` (and `max_cases`), at least `min_cases` of them (a
// loaded machine under a sanitizer still runs that many); fails on every bad outcome.
// MPP_FUZZ_SEED, MPP_FUZZ_SECONDS, MPP_FUZZ_CASES and MPP_FUZZ_MAX_BAD override the seed,
// the budget, the case count and how many failures end the run (5).
void fuzz(bool dict, std::uint64_t seed, std::chrono::seconds budget, int max_cases, int min_cases) {
  seed = env_or("MPP_FUZZ_SEED", seed);
  budget = std::chrono::seconds(env_or("MPP_FUZZ_SECONDS", static_cast<std::uint64_t>(budget.count())));
  max_cases = static_cast<int>(env_or("MPP_FUZZ_CASES", static_cast<std::uint64_t>(max_cases)));
  const int max_bad = static_cast<int>(env_or("MPP_FUZZ_MAX_BAD", 5));
  const Seed s = make_seed();
  std::vector<Range> avoid = s.locks;
  if (!dict) {
    avoid.insert(avoid.end(), s.readers.begin(), s.readers.end());
    avoid.insert(avoid.end(), s.dict.begin(), s.dict.end());
    avoid.insert(avoid.end(), s.allocator.begin(), s.allocator.end());
  }
  std::mt19937_64 rng(seed);
  KeptCases kept;
  const auto end = std::chrono::steady_clock::now() + budget;
  int cases = 0, bad = 0;
  for (; cases < max_cases && std::chrono::steady_clock::now() < end; ++cases) {
    const auto img = mutate(s, rng, avoid);
    const CaseResult r = run_case(img, dict);
    if (r.outcome != Outcome::fine) {
      ++bad;
      const std::string file = kept.keep(img, (dict ? "dict_" : "objects_") + std::to_string(cases));
      FAIL_CHECK("seed " << seed << " case " << cases << " " << describe(r) << "; image kept in "
                         << file << " (copy it into tests/data/segment_fuzz/ as a regression file)");
      if (bad >= max_bad) break;
    }
  }
  WARN("seed " << seed << ": " << cases << " cases, " << bad
               << " of them crashed, hung or threw another exception");
  CHECK(cases >= std::min(min_cases, max_cases));
  CHECK(bad == 0);
}

}  // namespace

namespace {

// Replays the regression files whose names start with `prefix` ("objects_": run with every
// object but the dict; "dict_": the dict and the segment's own structures).
void replay(const std::string& prefix, bool dict) {
  int files = 0;
  int attached = 0;
  const char* only = std::getenv("MPP_FUZZ_FILE");  // replay just this file (debugging)
  for (const auto& entry : fs::directory_iterator(regression_dir())) {
    const std::string file = entry.path().filename().string();
    if (entry.path().extension() != ".seg" || file.rfind(prefix, 0) != 0) continue;
    if (only && file != only) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<std::byte> img(fs::file_size(entry.path()));
    in.read(reinterpret_cast<char*>(img.data()), static_cast<std::streamsize>(img.size()));
    // A kept image is replayed as this build's format: after a format change attach would
    // refuse every one of them at once, and the replay would test nothing. Where the layout
    // moved, the image is still a damaged segment, which is what this test feeds the objects.
    constexpr std::size_t at = offsetof(mpp::detail::SegmentHeader, format_version);
    if (img.size() >= at + sizeof(std::uint32_t))
      std::memcpy(img.data() + at, &mpp::detail::FORMAT_VERSION, sizeof(std::uint32_t));
    ++files;
    INFO(file);
    const CaseResult r = run_case(img, dict);
    CHECK(describe(r) == "fine");
    attached += r.attached ? 1 : 0;
  }
  CHECK(files > 0);
  // Most kept images damage an object or the heap, not the header: if none gets past attach,
  // the replay has stopped testing what they were kept for.
  CHECK(attached * 2 >= files);
}

}  // namespace

TEST_CASE("regression files: kept corrupt segments are refused cleanly") { replay("objects_", false); }

TEST_CASE("regression files: kept corrupt dicts and segment structures") {
  replay("dict_", true);
}

TEST_CASE("fuzzed segments: lists, queues, values, arrays and sync objects never crash or hang") {
  fuzz(false, 20261207, std::chrono::seconds(15), 4000, 100);
}

TEST_CASE("fuzzed segments: dicts, reader slots and the segment's own structures") {
  // Each case calls every object's methods too: about 30 cases a second under ASan.
  fuzz(true, 7, std::chrono::seconds(8), 1500, 60);
}
