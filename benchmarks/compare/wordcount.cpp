// Workload 2 (and 5): N workers count the words of a corpus into one shared dict. The
// corpus is generated deterministically (log-uniform over a fixed vocabulary, so a few
// words are very common and many are rare) and written to a file for the Python side.
// Every variant's final counts are reduced to one digest (FNV-1a over the sorted
// "word\tcount\n" lines) and checked against the counts made by one process.
//
// Variants: per word — every word is one update of the shared dict (mpp, Boost with one
// mutex, Boost striped as mpp is: 32 maps each behind its own mutex); local +
// merge — each worker counts privately, then merges once (mpp, Python, and isolation,
// where the counts come back over pipes for the parent to merge).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <boost/interprocess/sync/scoped_lock.hpp>
#include <boost/unordered_map.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "../string_lookup.hpp"
#include "mpp/manager.hpp"
#include "workloads.hpp"

namespace bench {
namespace {

constexpr std::size_t kVocabulary = 30000;

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Word number r of the vocabulary: syllables spelling r in base 16, so every word is
// distinct and looks like text ("kaleno").
std::string vocabulary_word(std::size_t r) {
  static const char* syllables[] = {"ka", "le", "no", "ri", "su", "ta", "me", "po",
                                    "an", "do", "vi", "ze", "ul", "ho", "bi", "gre"};
  std::string w;
  do {
    w += syllables[r % 16];
    r /= 16;
  } while (r > 0);
  return w;
}

std::string make_corpus(std::size_t words) {
  std::vector<std::string> vocab;
  for (std::size_t r = 0; r < kVocabulary; ++r) vocab.push_back(vocabulary_word(r));
  std::string text;
  text.reserve(words * 8);
  std::uint64_t state = 42;
  const double log_v = std::log(double(kVocabulary));
  for (std::size_t i = 0; i < words; ++i) {
    const double u = double(splitmix64(state) >> 11) / double(1ull << 53);
    const auto r = std::min(kVocabulary - 1, std::size_t(std::exp(u * log_v)) - 1);
    text += vocab[r];
    text += (i % 16 == 15) ? '\n' : ' ';
  }
  return text;
}

bool is_space(char c) { return c == ' ' || c == '\n'; }

// Calls f(word) for each word of text[begin, end).
template <class F>
void for_each_word(std::string_view text, F&& f) {
  std::size_t i = 0;
  const std::size_t n = text.size();
  while (i < n) {
    while (i < n && is_space(text[i])) ++i;
    std::size_t j = i;
    while (j < n && !is_space(text[j])) ++j;
    if (j > i) f(text.substr(i, j - i));
    i = j;
  }
}

// The corpus cut into `parts` slices at word boundaries.
std::vector<std::string_view> split(std::string_view text, int parts) {
  std::vector<std::string_view> out;
  std::size_t begin = 0;
  for (int p = 1; p <= parts; ++p) {
    std::size_t end = p == parts ? text.size() : text.size() * std::size_t(p) / std::size_t(parts);
    while (end < text.size() && !is_space(text[end])) ++end;
    out.push_back(text.substr(begin, end - begin));
    begin = end;
  }
  return out;
}

// The digest of a set of counts, whatever container holds them.
template <class Map>
std::string digest(const Map& counts) {
  std::vector<std::pair<std::string_view, std::uint64_t>> items;
  for (const auto& [w, c] : counts) items.emplace_back(std::string_view(w.data(), w.size()), c);
  std::sort(items.begin(), items.end());
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const auto& [w, c] : items) {
    h = fnv1a(w, h);
    h = fnv1a("\t", h);
    h = fnv1a(std::to_string(c), h);
    h = fnv1a("\n", h);
  }
  return hex(h);
}

struct Corpus {
  std::string text;
  std::string path;  // a copy on disk for the Python side
  std::string digest;
  std::size_t words = 0;
};

using LocalCounts = std::unordered_map<std::string_view, std::uint64_t>;

// Forks one worker per slice running body(slice, in, out), each answering one byte when
// done; returns the wall time from the first fork to the last answer (plus `finish`).
double run_slices(const Corpus& corpus, int workers,
                  const std::function<void(std::string_view, int, int)>& body,
                  const std::function<void(std::vector<Worker>&)>& finish = {}) {
  const auto slices = split(corpus.text, workers);
  const auto start = Clock::now();
  std::vector<Worker> ws;
  for (int w = 0; w < workers; ++w)
    ws.push_back(spawn([&, w](int in, int out) { body(slices[std::size_t(w)], in, out); }, 1 << 20));
  if (finish) {
    finish(ws);
  } else {
    for (Worker& w : ws) read_pod<char>(w.from_child);
  }
  const double wall = seconds_since(start);
  reap_all(ws);
  return wall;
}

RunOut result(const Corpus& corpus, double wall, const std::string& got) {
  RunOut out;
  out.figures["wall"] = wall;
  out.figures["ops"] = double(corpus.words) / wall;
  out.correct = got == corpus.digest;
  if (!out.correct) out.why = "counts digest " + got + ", expected " + corpus.digest;
  return out;
}

// ---- isolated: slices in and counts out as copies over pipes ---------------------------

RunOut isolated(const Corpus& corpus, int workers) {
  std::unordered_map<std::string, std::uint64_t, StringHash, StringEq> total;
  auto body = [](std::string_view, int in, int out) {
    // The worker's input arrives over its pipe: a length, then the text.
    std::string text(read_pod<std::uint64_t>(in), '\0');
    read_all(in, text.data(), text.size());
    LocalCounts counts;
    for_each_word(text, [&](std::string_view w) { ++counts[w]; });
    std::string reply;
    for (const auto& [w, c] : counts) {
      reply += w;
      reply += '\t';
      reply += std::to_string(c);
      reply += '\n';
    }
    write_pod<std::uint64_t>(out, reply.size());
    write_all(out, reply.data(), reply.size());
  };
  auto finish = [&](std::vector<Worker>& ws) {
    const auto slices = split(corpus.text, int(ws.size()));
    std::vector<std::thread> writers;
    for (std::size_t i = 0; i < ws.size(); ++i)
      writers.emplace_back([fd = ws[i].to_child, s = slices[i]] {
        write_pod<std::uint64_t>(fd, s.size());
        write_all(fd, s.data(), s.size());
      });
    for (auto& t : writers) t.join();
    for (Worker& w : ws) {
      std::string reply(read_pod<std::uint64_t>(w.from_child), '\0');
      read_all(w.from_child, reply.data(), reply.size());
      std::string_view rest = reply;
      while (!rest.empty()) {
        const auto tab = rest.find('\t'), nl = rest.find('\n');
        const auto word = rest.substr(0, tab);
        const auto count = std::stoull(std::string(rest.substr(tab + 1, nl - tab - 1)));
        auto it = total.find(word);
        if (it == total.end()) it = total.emplace(std::string(word), 0).first;
        it->second += count;
        rest.remove_prefix(nl + 1);
      }
    }
  };
  const double wall = run_slices(corpus, workers, body, finish);
  return result(corpus, wall, digest(total));
}

// ---- mpp: a Dict<std::string, uint64_t> in a Manager's segment, inherited by the workers ---

struct MppDict {
  mpp::Manager manager{std::size_t(64) << 20};
  mpp::Dict<std::string, std::uint64_t> counts = manager.dict<std::string, std::uint64_t>("counts");
};

// Every word one atomic read-modify-write of the shared dict (Dict::modify): what Python's
// Manager dict cannot do without a separate lock.
RunOut mpp_per_word(const Corpus& corpus, int workers, MppDict& d) {
  d.counts.clear();
  auto body = [&d](std::string_view slice, int, int out) {
    for_each_word(slice, [&](std::string_view w) { d.counts.modify(w, [](std::uint64_t& v) { ++v; }); });
    write_pod(out, char(1));
  };
  const double wall = run_slices(corpus, workers, body);
  return result(corpus, wall, digest(d.counts.items()));
}

// Each worker counts privately, then adds its counts to the shared dict, one modify per
// distinct word.
RunOut mpp_local_merge(const Corpus& corpus, int workers, MppDict& d) {
  d.counts.clear();
  auto body = [&d](std::string_view slice, int, int out) {
    LocalCounts local;
    for_each_word(slice, [&](std::string_view w) { ++local[w]; });
    for (const auto& [w, c] : local) d.counts.modify(w, [c = c](std::uint64_t& v) { v += c; });
    write_pod(out, char(1));
  };
  const double wall = run_slices(corpus, workers, body);
  return result(corpus, wall, digest(d.counts.items()));
}

// ---- raw Boost.Interprocess: an unordered_map in a managed segment behind one mutex ------

namespace bip = boost::interprocess;
using Segment = bip::managed_shared_memory;
using ShmString = bip::basic_string<char, std::char_traits<char>,
                                    bip::allocator<char, Segment::segment_manager>>;
using ShmMap = boost::unordered_map<
    ShmString, std::uint64_t, StringHash, StringEq,
    bip::allocator<std::pair<const ShmString, std::uint64_t>, Segment::segment_manager>>;

struct BoostDict {
  std::string name;
  std::unique_ptr<Segment> segment;
  ShmMap* map = nullptr;
  bip::interprocess_mutex* mutex = nullptr;

  explicit BoostDict(std::size_t bytes)
      : name("mpp-bench-" + std::to_string(getpid()) + "-wordcount") {
    bip::shared_memory_object::remove(name.c_str());
    segment = std::make_unique<Segment>(bip::create_only, name.c_str(), bytes);
    map = segment->construct<ShmMap>("counts")(segment->get_segment_manager());
    mutex = segment->construct<bip::interprocess_mutex>("lock")();
  }
  ~BoostDict() {
    segment.reset();
    bip::shared_memory_object::remove(name.c_str());
  }
};

RunOut boost_per_word(const Corpus& corpus, int workers, BoostDict& d) {
  d.map->clear();
  auto body = [&d](std::string_view slice, int, int out) {
    // Opened by name in the worker, as an unrelated process would.
    Segment seg(bip::open_only, d.name.c_str());
    auto* map = seg.find<ShmMap>("counts").first;
    auto* mutex = seg.find<bip::interprocess_mutex>("lock").first;
    for_each_word(slice, [&](std::string_view w) {
      bip::scoped_lock<bip::interprocess_mutex> lock(*mutex);
      auto it = map->find(w);
      if (it != map->end())
        ++it->second;
      else
        map->emplace(ShmString(w.data(), w.size(), seg.get_segment_manager()), 1);
    });
    write_pod(out, char(1));
  };
  const double wall = run_slices(corpus, workers, body);
  return result(corpus, wall, digest(*d.map));
}

// ---- Boost.Interprocess striped as mpp's Dict is: kStripes maps, each behind its own mutex,
// the word's hash picking one (like is compared with like: mpp's Dict stripes its writers) --

constexpr std::size_t kBoostStripes = 32;  // mpp's kDictStripes

struct BoostStripedDict {
  std::string name;
  std::unique_ptr<Segment> segment;
  ShmMap* maps[kBoostStripes] = {};
  bip::interprocess_mutex* mutexes = nullptr;

  explicit BoostStripedDict(std::size_t bytes)
      : name("mpp-bench-" + std::to_string(getpid()) + "-wordcount-striped") {
    bip::shared_memory_object::remove(name.c_str());
    segment = std::make_unique<Segment>(bip::create_only, name.c_str(), bytes);
    for (std::size_t i = 0; i < kBoostStripes; ++i) {
      maps[i] = segment->construct<ShmMap>(("counts" + std::to_string(i)).c_str())(
          segment->get_segment_manager());
    }
    mutexes = segment->construct<bip::interprocess_mutex>("locks")[kBoostStripes]();
  }
  ~BoostStripedDict() {
    segment.reset();
    bip::shared_memory_object::remove(name.c_str());
  }
};

RunOut boost_striped_per_word(const Corpus& corpus, int workers, BoostStripedDict& d) {
  for (auto* m : d.maps) m->clear();
  auto body = [&d](std::string_view slice, int, int out) {
    Segment seg(bip::open_only, d.name.c_str());
    ShmMap* maps[kBoostStripes];
    for (std::size_t i = 0; i < kBoostStripes; ++i) {
      maps[i] = seg.find<ShmMap>(("counts" + std::to_string(i)).c_str()).first;
    }
    auto* mutexes = seg.find<bip::interprocess_mutex>("locks").first;
    for_each_word(slice, [&](std::string_view w) {
      const std::size_t h = StringHash{}(w);
      // The high bits pick the stripe: the map's buckets use the low ones.
      const std::size_t s = (h >> 32) % kBoostStripes;
      bip::scoped_lock<bip::interprocess_mutex> lock(mutexes[s]);
      auto it = maps[s]->find(w);
      if (it != maps[s]->end())
        ++it->second;
      else
        maps[s]->emplace(ShmString(w.data(), w.size(), seg.get_segment_manager()), 1);
    });
    write_pod(out, char(1));
  };
  const double wall = run_slices(corpus, workers, body);
  std::unordered_map<std::string_view, std::uint64_t> all;
  for (auto* m : d.maps) {
    for (const auto& [k, v] : *m) all[std::string_view(k.data(), k.size())] += v;
  }
  return result(corpus, wall, digest(all));
}

// ---- the cases -------------------------------------------------------------------------

void add_case(Plan& plan, const std::shared_ptr<Corpus>& corpus, std::size_t words, int workers,
              bool python_per_word) {
  const Config& cfg = plan.config();
  Case c;
  c.workload = "wordcount";
  c.name = (words >= 1000 ? std::to_string(words / 1000) + "k" : std::to_string(words)) + " words, " + std::to_string(workers) +
           (workers == 1 ? " worker" : " workers");
  c.params = {{"words", words}, {"workers", workers}, {"vocabulary", kVocabulary}};
  c.metrics = {
      {"wall", "wall", "ms", 1e-3, false, {kMpp, kIsolated}, 0, ""},
      {"ops", "words", "/s", 1, true, {kMpp, kIsolated}, 0, ""},
  };
  const std::size_t ci = plan.add_case(std::move(c));

  auto mpp_dict = std::make_shared<std::unique_ptr<MppDict>>();
  auto with_dict = [&](const char* variant, RunOut (*run)(const Corpus&, int, MppDict&)) {
    Task t = measured(ci, variant, [=] { return run(*corpus, workers, **mpp_dict); });
    t.setup = [=] { *mpp_dict = std::make_unique<MppDict>(); };
    t.teardown = [=] { mpp_dict->reset(); };
    plan.add(std::move(t));
  };
  with_dict(kMpp, mpp_per_word);
  with_dict("mpp (local + merge)", mpp_local_merge);

  plan.add(measured(ci, kIsolated, [=] { return isolated(*corpus, workers); }));

  auto verify = [=](RunOut& out, const std::string& check) {
    if (check != corpus->digest) {
      out.correct = false;
      out.why = "counts digest " + check + ", expected " + corpus->digest;
    }
  };
  auto python = [=, &cfg](const char* mode) {
    return [=, &cfg](int warmup, int reps) {
      return run_python(cfg, "wordcount.py",
                        {"--corpus", corpus->path, "--workers", std::to_string(workers),
                         "--mode", mode},
                        warmup, reps, verify);
    };
  };
  plan.add(batched(ci, "python mp (local + merge)", python("local")));
  if (python_per_word) plan.add(batched(ci, "python mp (per word)", python("perword")));

  auto dict = std::make_shared<std::unique_ptr<BoostDict>>();
  Task t = measured(ci, kBoost, [=] { return boost_per_word(*corpus, workers, **dict); });
  t.setup = [=] { *dict = std::make_unique<BoostDict>(std::size_t(64) << 20); };
  t.teardown = [=] { dict->reset(); };
  plan.add(std::move(t));

  auto striped = std::make_shared<std::unique_ptr<BoostStripedDict>>();
  Task ts = measured(ci, "boost.interprocess (stripes)",
                     [=] { return boost_striped_per_word(*corpus, workers, **striped); });
  ts.setup = [=] { *striped = std::make_unique<BoostStripedDict>(std::size_t(64) << 20); };
  ts.teardown = [=] { striped->reset(); };
  plan.add(std::move(ts));
}

// Makes the corpus (and its file and reference digest) on first use, so a run limited to
// other workloads does not pay for it; the file is removed when the plan is destroyed.
std::shared_ptr<Corpus> corpus_of(std::size_t words) {
  auto c = std::shared_ptr<Corpus>(new Corpus, [](Corpus* p) {
    if (!p->path.empty()) std::filesystem::remove(p->path);
    delete p;
  });
  c->words = words;
  c->text = make_corpus(words);
  c->path = (std::filesystem::temp_directory_path() /
             ("mpp-bench-" + std::to_string(getpid()) + "-corpus-" + std::to_string(words) + ".txt"))
                .string();
  std::ofstream(c->path, std::ios::binary) << c->text;
  std::unordered_map<std::string_view, std::uint64_t> counts;
  for_each_word(c->text, [&](std::string_view w) { ++counts[w]; });
  c->digest = digest(counts);
  return c;
}

}  // namespace

void add_wordcount(Plan& plan) {
  if (plan.config().quick) {
    add_case(plan, corpus_of(5000), 5000, 2, true);
    return;
  }
  // Python's per-word updates run at a few thousand words/s: they get a small corpus of
  // their own, measured beside every other variant on the same words.
  const auto small = corpus_of(5000);
  add_case(plan, small, 5000, 2, true);
  // Long enough that one worker's per-word run takes a few hundred ms, far above the fork
  // and the noise of a shared machine.
  constexpr std::size_t kBigCorpus = 3000000;
  const auto big = corpus_of(kBigCorpus);
  for (int workers : {1, 2, 4, 8}) add_case(plan, big, kBigCorpus, workers, false);
}

}  // namespace bench
