// Dict and List against raw Boost.Interprocess (a boost::unordered_map in a managed segment
// behind one interprocess_mutex: the shared-memory map one would write by hand) and against
// std::unordered_map (private memory, with and without a std::mutex), all in one run.
// Python's Manager doing the same work is benchmarks/python/dict_bench.py. "contended" runs
// a forked second process doing the same operation on the same map for the whole
// measurement; `total_ops` counts both. Values: long, and 100-byte strings (a set replaces
// an existing key's value with another of the same length).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <boost/interprocess/sync/scoped_lock.hpp>
#include <boost/unordered_map.hpp>
#include <chrono>
#include <benchmark/benchmark.h>
#include <mutex>
#include <string>
#include <unordered_map>

#include "../string_lookup.hpp"
#include "mpp/manager.hpp"

namespace {

constexpr int kKeys = 1000;

mpp::Manager& manager() {
  static mpp::Manager m(std::size_t{512} << 20);
  return m;
}

template <class V>
V make_value(int i) {
  if constexpr (std::is_same_v<V, std::string>) {
    return std::string(100, static_cast<char>('a' + i % 26));
  } else {
    return static_cast<V>(i);
  }
}

template <class V>
mpp::Dict<long, V> filled_dict(const std::string& name) {
  auto d = manager().dict<long, V>(name);
  for (int i = 0; i < kKeys; ++i) d.set(i, make_value<V>(i));
  return d;
}

// A forked process running `op(i)` in a loop until stopped; counts its operations.
class Rival {
 public:
  template <class Op>
  explicit Rival(Op op) {
    counter_ = manager().dict<int, long>("rival-control");
    counter_.set(0, 0);  // 0: running
    pid_ = fork();
    if (pid_ == 0) {
      long n = 0;
      for (long i = 0;; ++i) {
        op(i);
        if ((++n & 1023) == 0) {
          counter_.set(1, n);
          if (counter_.get(0, 0) != 0) break;
        }
      }
      _exit(0);
    }
  }
  long stop() {
    counter_.set(0, 1);
    int st;
    waitpid(pid_, &st, 0);
    return counter_.get(1, 0);
  }

 private:
  pid_t pid_ = -1;
  mpp::Dict<int, long> counter_ = manager().dict<int, long>("rival-control");
};

// Operations per second of wall-clock time, of this process and of both together (the
// rival's count is sampled every 1024 of its operations).
void report(benchmark::State& state, std::chrono::steady_clock::time_point t0, long other) {
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  state.counters["ops_wall"] = static_cast<double>(state.iterations()) / secs;
  state.counters["total_ops_wall"] = static_cast<double>(state.iterations() + other) / secs;
}

template <class V>
void BM_MppDictGet(benchmark::State& state) {
  auto d = filled_dict<V>("get-" + std::to_string(sizeof(V)));
  const bool contended = state.range(0) != 0;
  std::unique_ptr<Rival> rival;
  if (contended) rival = std::make_unique<Rival>([d](long i) { benchmark::DoNotOptimize(d.get(i % kKeys)); });
  long i = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) benchmark::DoNotOptimize(d.get(i++ % kKeys));
  report(state, t0, rival ? rival->stop() : 0);
}

template <class V>
void BM_MppDictSet(benchmark::State& state) {
  auto d = filled_dict<V>("set-" + std::to_string(sizeof(V)));
  const bool contended = state.range(0) != 0;
  const V v = make_value<V>(7);
  std::unique_ptr<Rival> rival;
  if (contended) rival = std::make_unique<Rival>([d, v](long i) mutable { d.set(i % kKeys, v); });
  long i = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) d.set(i++ % kKeys, v);
  report(state, t0, rival ? rival->stop() : 0);
}

void BM_MppDictIncrement(benchmark::State& state) {
  auto d = manager().dict<long, long>("incr");
  for (auto _ : state) d.modify(1, [](long& v) { ++v; });
}

void BM_MppListAppend(benchmark::State& state) {
  auto l = manager().list<long>("append");
  long i = 0;
  for (auto _ : state) {
    l.append(i++);
    if ((i & 0xfffff) == 0) {
      state.PauseTiming();
      l.clear();
      state.ResumeTiming();
    }
  }
  l.clear();
}

// ---- raw Boost.Interprocess -------------------------------------------------------------

namespace bip = boost::interprocess;
using BoostSegment = bip::managed_shared_memory;
using BoostString = bip::basic_string<char, std::char_traits<char>,
                                      bip::allocator<char, BoostSegment::segment_manager>>;
template <class V>
using BoostValue = std::conditional_t<std::is_same_v<V, std::string>, BoostString, V>;
template <class V>
using BoostMap = boost::unordered_map<
    long, BoostValue<V>, boost::hash<long>, std::equal_to<long>,
    bip::allocator<std::pair<const long, BoostValue<V>>, BoostSegment::segment_manager>>;

// One segment per value type, made on first use and removed at exit.
template <class V>
struct BoostDict {
  std::string name = "mpp-dict-bench-" + std::to_string(getpid()) + "-" + std::to_string(sizeof(V));
  std::unique_ptr<BoostSegment> seg;
  BoostMap<V>* map = nullptr;
  bip::interprocess_mutex* mutex = nullptr;

  BoostDict() {
    bip::shared_memory_object::remove(name.c_str());
    seg = std::make_unique<BoostSegment>(bip::create_only, name.c_str(), std::size_t{64} << 20);
    map = seg->construct<BoostMap<V>>("map")(seg->get_segment_manager());
    mutex = seg->construct<bip::interprocess_mutex>("lock")();
    for (int i = 0; i < kKeys; ++i) map->emplace(i, to_boost(make_value<V>(i)));
  }
  ~BoostDict() {
    seg.reset();
    bip::shared_memory_object::remove(name.c_str());
  }
  BoostValue<V> to_boost(const V& v) {
    if constexpr (std::is_same_v<V, std::string>) {
      return BoostString(v.data(), v.size(), seg->get_segment_manager());
    } else {
      return v;
    }
  }
  // A copy out, as mpp's get returns one.
  V get(long k) {
    bip::scoped_lock<bip::interprocess_mutex> lock(*mutex);
    const auto& v = map->find(k)->second;
    if constexpr (std::is_same_v<V, std::string>) {
      return std::string(v.data(), v.size());
    } else {
      return v;
    }
  }
  void set(long k, const V& v) {
    bip::scoped_lock<bip::interprocess_mutex> lock(*mutex);
    auto it = map->find(k);
    if constexpr (std::is_same_v<V, std::string>) {
      it->second.assign(v.data(), v.size());
    } else {
      it->second = v;
    }
  }
};

template <class V>
BoostDict<V>& boost_dict() {
  static BoostDict<V> d;
  return d;
}

template <class V>
void BM_BoostMapGet(benchmark::State& state) {
  auto& d = boost_dict<V>();
  std::unique_ptr<Rival> rival;
  if (state.range(0) != 0) rival = std::make_unique<Rival>([&d](long i) { benchmark::DoNotOptimize(d.get(i % kKeys)); });
  long i = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) benchmark::DoNotOptimize(d.get(i++ % kKeys));
  report(state, t0, rival ? rival->stop() : 0);
}

template <class V>
void BM_BoostMapSet(benchmark::State& state) {
  auto& d = boost_dict<V>();
  const V v = make_value<V>(7);
  std::unique_ptr<Rival> rival;
  if (state.range(0) != 0) rival = std::make_unique<Rival>([&d, v](long i) { d.set(i % kKeys, v); });
  long i = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) d.set(i++ % kKeys, v);
  report(state, t0, rival ? rival->stop() : 0);
}

// ---- private memory ----------------------------------------------------------------------

template <class V, bool Locked>
void BM_StdUnorderedMapGet(benchmark::State& state) {
  std::unordered_map<long, V> m;
  std::mutex mu;
  for (int i = 0; i < kKeys; ++i) m[i] = make_value<V>(i);
  long i = 0;
  for (auto _ : state) {
    if constexpr (Locked) {
      std::lock_guard g(mu);
      benchmark::DoNotOptimize(m.find(i++ % kKeys)->second);
    } else {
      benchmark::DoNotOptimize(m.find(i++ % kKeys)->second);
    }
  }
}

template <class V, bool Locked>
void BM_StdUnorderedMapSet(benchmark::State& state) {
  std::unordered_map<long, V> m;
  std::mutex mu;
  for (int i = 0; i < kKeys; ++i) m[i] = make_value<V>(i);
  const V v = make_value<V>(7);
  long i = 0;
  for (auto _ : state) {
    if constexpr (Locked) {
      std::lock_guard g(mu);
      m[i++ % kKeys] = v;
    } else {
      m[i++ % kKeys] = v;
    }
    benchmark::ClobberMemory();
  }
}

}  // namespace

BENCHMARK_TEMPLATE(BM_MppDictGet, long)->Arg(0)->Arg(1)->ArgName("contended");
BENCHMARK_TEMPLATE(BM_MppDictSet, long)->Arg(0)->Arg(1)->ArgName("contended");
BENCHMARK_TEMPLATE(BM_MppDictGet, std::string)->Arg(0)->Arg(1)->ArgName("contended");
BENCHMARK_TEMPLATE(BM_MppDictSet, std::string)->Arg(0)->Arg(1)->ArgName("contended");
BENCHMARK_TEMPLATE(BM_BoostMapGet, long)->Arg(0)->Arg(1)->ArgName("contended");
BENCHMARK_TEMPLATE(BM_BoostMapSet, long)->Arg(0)->Arg(1)->ArgName("contended");
BENCHMARK_TEMPLATE(BM_BoostMapGet, std::string)->Arg(0)->Arg(1)->ArgName("contended");
BENCHMARK_TEMPLATE(BM_BoostMapSet, std::string)->Arg(0)->Arg(1)->ArgName("contended");
BENCHMARK(BM_MppDictIncrement);
BENCHMARK(BM_MppListAppend);
BENCHMARK_TEMPLATE(BM_StdUnorderedMapGet, long, false);
BENCHMARK_TEMPLATE(BM_StdUnorderedMapGet, long, true);
BENCHMARK_TEMPLATE(BM_StdUnorderedMapSet, long, false);
BENCHMARK_TEMPLATE(BM_StdUnorderedMapSet, long, true);
BENCHMARK_TEMPLATE(BM_StdUnorderedMapGet, std::string, true);
BENCHMARK_TEMPLATE(BM_StdUnorderedMapSet, std::string, true);
BENCHMARK_MAIN();

// ---- List: get by index ------------------------------------------------------------------
// mpp::List<V>::get against a Boost.Interprocess vector behind one interprocess_mutex (the
// shared-memory list one would write by hand) and a std::vector behind a std::mutex (private
// memory), kKeys elements, reading index i % kKeys. "rival": 0 alone, 1 with a forked
// process setting elements for the whole measurement (a writer), 2 with one getting them (a
// second reader), each on its own core (PinnedApart); `total_ops` counts both.

#include <sched.h>

#include <boost/interprocess/containers/vector.hpp>

namespace {

// The List's rival rows on two different cores: the rival is forked while this process is
// on the second CPU it may use (the child keeps that), then this process moves to the
// first; the old mask comes back at the end. On a loaded machine the scheduler would
// otherwise often time-slice both on one core, and a writer that is not running cannot
// keep a reader out: the rows would not measure what they are for. With one CPU it pins
// nothing.
class PinnedApart {
 public:
  template <class MakeRival>
  explicit PinnedApart(MakeRival make) {
    if (sched_getaffinity(0, sizeof old_, &old_) != 0 || CPU_COUNT(&old_) < 2) {
      make();
      return;
    }
    int first = -1, second = -1;
    for (int c = 0; c < CPU_SETSIZE && second < 0; ++c) {
      if (CPU_ISSET(c, &old_)) (first < 0 ? first : second) = c;
    }
    pin(second);
    make();
    pin(first);
    pinned_ = true;
  }
  ~PinnedApart() {
    if (pinned_) sched_setaffinity(0, sizeof old_, &old_);
  }
  PinnedApart(const PinnedApart&) = delete;
  PinnedApart& operator=(const PinnedApart&) = delete;

 private:
  static void pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof s, &s);
  }
  cpu_set_t old_{};
  bool pinned_ = false;
};

template <class V>
mpp::List<V> filled_list(const std::string& name) {
  auto l = manager().list<V>(name);
  l.clear();
  for (int i = 0; i < kKeys; ++i) l.append(make_value<V>(i));
  return l;
}

template <class V>
void BM_MppListGet(benchmark::State& state) {
  auto l = filled_list<V>("list-get-" + std::to_string(sizeof(V)));
  const V v = make_value<V>(7);
  std::unique_ptr<Rival> rival;
  PinnedApart apart([&] {
    if (state.range(0) == 1) rival = std::make_unique<Rival>([l, v](long i) mutable { l.set(i % kKeys, v); });
    if (state.range(0) == 2) rival = std::make_unique<Rival>([l](long i) { benchmark::DoNotOptimize(l.get(i % kKeys)); });
  });
  long i = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) benchmark::DoNotOptimize(l.get(i++ % kKeys));
  report(state, t0, rival ? rival->stop() : 0);
}

template <class V>
using BoostVector = bip::vector<BoostValue<V>, bip::allocator<BoostValue<V>, BoostSegment::segment_manager>>;

// One segment per value type, made on first use and removed at exit.
template <class V>
struct BoostList {
  std::string name = "mpp-list-bench-" + std::to_string(getpid()) + "-" + std::to_string(sizeof(V));
  std::unique_ptr<BoostSegment> seg;
  BoostVector<V>* vec = nullptr;
  bip::interprocess_mutex* mutex = nullptr;

  BoostList() {
    bip::shared_memory_object::remove(name.c_str());
    seg = std::make_unique<BoostSegment>(bip::create_only, name.c_str(), std::size_t{64} << 20);
    vec = seg->construct<BoostVector<V>>("vec")(seg->get_segment_manager());
    mutex = seg->construct<bip::interprocess_mutex>("lock")();
    for (int i = 0; i < kKeys; ++i) {
      if constexpr (std::is_same_v<V, std::string>) {
        const V s = make_value<V>(i);
        vec->emplace_back(s.data(), s.size(), seg->get_segment_manager());
      } else {
        vec->push_back(make_value<V>(i));
      }
    }
  }
  ~BoostList() {
    seg.reset();
    bip::shared_memory_object::remove(name.c_str());
  }
  // A copy out, as mpp's get returns one.
  V get(long i) {
    bip::scoped_lock<bip::interprocess_mutex> lock(*mutex);
    const auto& v = (*vec)[static_cast<std::size_t>(i)];
    if constexpr (std::is_same_v<V, std::string>) {
      return std::string(v.data(), v.size());
    } else {
      return v;
    }
  }
  void set(long i, const V& v) {
    bip::scoped_lock<bip::interprocess_mutex> lock(*mutex);
    auto& x = (*vec)[static_cast<std::size_t>(i)];
    if constexpr (std::is_same_v<V, std::string>) {
      x.assign(v.data(), v.size());
    } else {
      x = v;
    }
  }
};

// The one BoostList<V> of the process (its segment is named after the pid and V's size).
template <class V>
BoostList<V>& boost_list() {
  static BoostList<V> l;
  return l;
}

template <class V>
void BM_BoostVectorGet(benchmark::State& state) {
  static BoostList<V>& l = boost_list<V>();
  const V v = make_value<V>(7);
  std::unique_ptr<Rival> rival;
  PinnedApart apart([&] {
    if (state.range(0) == 1) rival = std::make_unique<Rival>([v](long i) { l.set(i % kKeys, v); });
    if (state.range(0) == 2) rival = std::make_unique<Rival>([](long i) { benchmark::DoNotOptimize(l.get(i % kKeys)); });
  });
  long i = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) benchmark::DoNotOptimize(l.get(i++ % kKeys));
  report(state, t0, rival ? rival->stop() : 0);
}

// ---- List: set by index ------------------------------------------------------------------
// mpp::List<V>::set against the Boost.Interprocess vector behind its mutex, one process,
// index i % kKeys: a long, and a 100-byte string over a 100-byte element (both written in
// place by mpp, as Boost's assignment does).
template <class V>
void BM_MppListSet(benchmark::State& state) {
  auto l = filled_list<V>("list-set-" + std::to_string(sizeof(V)));
  const V v = make_value<V>(7);
  long i = 0;
  for (auto _ : state) l.set(i++ % kKeys, v);
}

template <class V>
void BM_BoostVectorSet(benchmark::State& state) {
  BoostList<V>& l = boost_list<V>();
  const V v = make_value<V>(7);
  long i = 0;
  for (auto _ : state) l.set(i++ % kKeys, v);
}

template <class V>
void BM_StdVectorMutexGet(benchmark::State& state) {
  std::vector<V> vec;
  std::mutex mu;
  for (int i = 0; i < kKeys; ++i) vec.push_back(make_value<V>(i));
  long i = 0;
  for (auto _ : state) {
    V v;
    {
      std::lock_guard g(mu);
      v = vec[static_cast<std::size_t>(i++ % kKeys)];
    }
    benchmark::DoNotOptimize(v);
  }
}

}  // namespace

BENCHMARK_TEMPLATE(BM_MppListGet, long)->Arg(0)->Arg(1)->Arg(2)->ArgName("rival");
BENCHMARK_TEMPLATE(BM_MppListGet, std::string)->Arg(0)->Arg(1)->Arg(2)->ArgName("rival");
BENCHMARK_TEMPLATE(BM_BoostVectorGet, long)->Arg(0)->Arg(1)->Arg(2)->ArgName("rival");
BENCHMARK_TEMPLATE(BM_BoostVectorGet, std::string)->Arg(0)->Arg(1)->Arg(2)->ArgName("rival");
BENCHMARK_TEMPLATE(BM_MppListSet, long);
BENCHMARK_TEMPLATE(BM_MppListSet, std::string);
BENCHMARK_TEMPLATE(BM_BoostVectorSet, long);
BENCHMARK_TEMPLATE(BM_BoostVectorSet, std::string);
BENCHMARK_TEMPLATE(BM_StdVectorMutexGet, long);
BENCHMARK_TEMPLATE(BM_StdVectorMutexGet, std::string);

// ---- Counting words: one update per word over a large vocabulary -------------------------
// The comparison suite's per-word word count without its tokenizer and its processes: a word
// drawn log-uniformly from 50,000 (3 to 10 letters) is incremented in a shared Dict
// (`modify` with a string_view), in Boost's map behind one interprocess_mutex (find, then
// ++, with a transparent hash as in the suite) and in a private std::unordered_map behind a
// std::mutex. A warm-up pass puts every word of the sequence in each map first, so a row
// measures the lookup and the update. With a vocabulary this large the bucket and node loads
// miss the caches: that, more than the instructions, is where all three spend their time.

#include <cmath>
#include <random>
#include <string_view>

namespace {

constexpr std::size_t kVocabularyWords = 50000;
constexpr std::size_t kSequence = std::size_t{1} << 20;  // a power of two: i & (kSequence - 1)

const std::vector<std::string>& vocabulary() {
  static const std::vector<std::string> v = [] {
    std::vector<std::string> out;
    std::mt19937_64 rng(1);
    for (std::size_t i = 0; i < kVocabularyWords; ++i) {
      std::string s(3 + rng() % 8, ' ');
      for (char& c : s) c = static_cast<char>('a' + rng() % 26);
      out.push_back(std::move(s));
    }
    return out;
  }();
  return v;
}

const std::vector<std::string_view>& word_sequence() {
  static const std::vector<std::string_view> w = [] {
    std::vector<std::string_view> out;
    std::mt19937_64 rng(2);
    const double log_v = std::log(double(kVocabularyWords));
    for (std::size_t i = 0; i < kSequence; ++i) {
      const double u = double(rng() >> 11) / double(std::uint64_t{1} << 53);
      out.push_back(vocabulary()[std::min(kVocabularyWords - 1, std::size_t(std::exp(u * log_v)) - 1)]);
    }
    return out;
  }();
  return w;
}

using BoostWordMap = boost::unordered_map<
    BoostString, std::uint64_t, bench::StringHash, bench::StringEq,
    bip::allocator<std::pair<const BoostString, std::uint64_t>, BoostSegment::segment_manager>>;

void BM_MppDictCountWord(benchmark::State& state) {
  auto d = manager().dict<std::string, std::uint64_t>("count-words");
  const auto& w = word_sequence();
  for (std::string_view x : w) d.modify(x, [](std::uint64_t& v) { ++v; });
  std::size_t i = 0;
  for (auto _ : state) d.modify(w[i++ & (kSequence - 1)], [](std::uint64_t& v) { ++v; });
}

void BM_BoostMapCountWord(benchmark::State& state) {
  const std::string name = "mpp-dict-bench-" + std::to_string(getpid()) + "-words";
  bip::shared_memory_object::remove(name.c_str());
  {
    BoostSegment seg(bip::create_only, name.c_str(), std::size_t{64} << 20);
    auto* map = seg.construct<BoostWordMap>("map")(seg.get_segment_manager());
    auto* mutex = seg.construct<bip::interprocess_mutex>("lock")();
    auto count = [&](std::string_view x) {
      bip::scoped_lock<bip::interprocess_mutex> lock(*mutex);
      auto it = map->find(x);
      if (it != map->end()) {
        ++it->second;
      } else {
        map->emplace(BoostString(x.data(), x.size(), seg.get_segment_manager()), 1);
      }
    };
    const auto& w = word_sequence();
    for (std::string_view x : w) count(x);
    std::size_t i = 0;
    for (auto _ : state) count(w[i++ & (kSequence - 1)]);
  }
  bip::shared_memory_object::remove(name.c_str());
}

void BM_StdUnorderedMapCountWord(benchmark::State& state) {
  std::unordered_map<std::string_view, std::uint64_t> m;
  std::mutex mu;
  const auto& w = word_sequence();
  for (std::string_view x : w) ++m[x];
  std::size_t i = 0;
  for (auto _ : state) {
    std::lock_guard g(mu);
    ++m[w[i++ & (kSequence - 1)]];
  }
}

}  // namespace

BENCHMARK(BM_MppDictCountWord);
BENCHMARK(BM_BoostMapCountWord);
BENCHMARK(BM_StdUnorderedMapCountWord);
