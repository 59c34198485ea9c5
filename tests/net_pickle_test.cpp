// The safe pickle subset against real CPython output: every captured frame and every
// generated sample decodes to what Python printed, re-encodes, and round-trips; globals
// outside the allow-list are refused; mutated vectors never crash the decoder.
#include <catch2/catch.hpp>
#include <map>
#include <random>

#include "mpp/net/pickle.hpp"
#include "support/wire_vectors.hpp"

using namespace mpp::net;
using mpp::test::read_tsv;
using mpp::test::unescape_tsv;
using mpp::test::unhex;
using mpp::test::wire_vectors_dir;

namespace {

std::vector<std::string> all_pickles() {
  std::vector<std::string> out;
  for (auto& row : read_tsv(wire_vectors_dir() / "pickle-samples.tsv")) out.push_back(unhex(row.at(3)));
  for (auto& sc : mpp::test::wire_scenarios())
    for (auto& row : read_tsv(wire_vectors_dir() / sc / "frames.tsv"))
      if (row.at(3) == "pickle") out.push_back(unhex(row.at(5)));
  return out;
}

}  // namespace

TEST_CASE("every pickle-samples.tsv row decodes to Python's repr and round-trips") {
  auto rows = read_tsv(wire_vectors_dir() / "pickle-samples.tsv");
  REQUIRE(rows.size() >= 70);
  for (auto& row : rows) {
    INFO(row[0] << " " << row[1] << " protocol " << row[2]);
    PyObject v = unpickle(unhex(row[3]));
    CHECK(repr(v) == row[4]);  // this file's repr column is not escaped
    std::string again = pickle(v);
    CHECK(unpickle(again) == v);
  }
}

TEST_CASE("every captured pickle frame decodes to what Python printed") {
  int checked = 0;
  for (auto& sc : mpp::test::wire_scenarios()) {
    for (auto& row : read_tsv(wire_vectors_dir() / sc / "frames.tsv")) {
      if (row.at(3) != "pickle") continue;
      INFO(sc << " conn " << row[0] << " " << row[1] << " #" << row[2]);
      PyObject v = unpickle(unhex(row[5]));
      CHECK(repr(v) == unescape_tsv(row[6]));
      CHECK(unpickle(pickle(v)) == v);
      ++checked;
    }
  }
  CHECK(checked > 150);
}

TEST_CASE("the encoder writes Python's bytes for the messages of the classic flow") {
  // Python 3.11 writes FRAME and MEMOIZE, which are optional; without them the opcodes match.
  CHECK(pickle(PyObject()) == unhex("80044e2e"));
  CHECK(pickle(py_tuple("#ERROR", ExceptionValue{"queue", "Empty", {}, {}})) ==
        unhex("8004" "8c06234552524f52" "8c057175657565" "8c05456d707479" "93" "29" "52" "86" "2e"));
  CHECK(pickle(PyObject(std::int64_t{-1})) == unhex("80044affffffff2e"));
  CHECK(pickle(PyObject(std::int64_t{1} << 40)) == unhex("80048a06000000000001" "2e"));
  CHECK(repr(unpickle(pickle(PyObject(std::uint64_t{1} << 63)))) == "9223372036854775808");
}

TEST_CASE("C++ values convert to and from PyObject") {
  std::map<std::string, std::vector<int>> m{{"a", {1, 2}}, {"b", {}}};
  PyObject v = to_py(m);
  CHECK(repr(v) == "{'a': [1, 2], 'b': []}");
  CHECK(from_py<std::map<std::string, std::vector<int>>>(unpickle(pickle(v))) == m);
  auto t = std::make_tuple(std::int64_t{1}, std::string("x"), 2.5, true);
  CHECK(from_py<decltype(t)>(to_py(t)) == t);
  CHECK(repr(to_py(std::optional<int>())) == "None");
  CHECK_THROWS_AS(from_py<std::uint8_t>(PyObject(300)), mpp::TypeMismatch);
  CHECK_THROWS_AS(from_py<std::string>(PyObject(3)), mpp::TypeMismatch);
  struct Pod {
    int a;
    double b;
  };
  Pod p{7, 1.5};
  Pod q = from_py<Pod>(unpickle(pickle(to_py(p))));  // user types travel as codec bytes
  CHECK(q.a == 7);
  CHECK(q.b == 1.5);
  CHECK(repr(PyObject(0.1)) == "0.1");
  CHECK(repr(PyObject(1e16)) == "1e+16");
  CHECK(repr(PyObject(100.0)) == "100.0");
  CHECK(repr(PyObject(1e-5)) == "1e-05");
  CHECK(repr(PyObject("it's")) == "\"it's\"");
}

TEST_CASE("globals outside the allow-list are refused, naming the global") {
  // pickle.dumps of a reduce to os.system('true'), protocols 0-style GLOBAL and 4 STACK_GLOBAL.
  std::string p2 = std::string("\x80\x02" "cposix\nsystem\nq\x00X\x04\x00\x00\x00true\x85R.", 27);
  std::string p4 = unhex("80048c02" "6f73" "8c06" "73797374656d" "93" "8c0474727565" "85" "52" "2e");
  for (auto& p : {p2, p4}) {
    try {
      unpickle(p);
      FAIL("accepted a pickle that calls system");
    } catch (const mpp::DecodeError& e) {
      CHECK_THAT(e.what(), Catch::Contains("system") && Catch::Contains("not allowed"));
    }
  }
  // builtins.eval is a builtin but no exception: refused too.
  CHECK_THROWS_WITH(unpickle(unhex("80048c086275696c74696e738c046576616c938c01318552" "2e")),
                    Catch::Contains("builtins.eval"));
  // A class we do not know, even harmless, is not constructed.
  CHECK_THROWS_AS(unpickle(unhex("80048c086461746574696d658c046461746593298152" "2e")), mpp::DecodeError);
  // The encoder refuses to write a non-allowed global.
  CHECK_THROWS_AS(pickle(ExceptionValue{"os", "system", {}, {}}), mpp::ValueError);
}

TEST_CASE("structural limits: depth, bytes after STOP, memo blow-up, self-reference") {
  std::string deep = "\x80\x04" + std::string(300, ']') + ".";
  CHECK_THROWS_AS(unpickle(deep), mpp::DecodeError);  // stack of 300 items at STOP
  std::string nested = "\x80\x04" + std::string(300, '(') ;
  CHECK_THROWS_AS(unpickle(nested), mpp::DecodeError);
  CHECK_THROWS_AS(unpickle(unhex("80044e2e00")), mpp::DecodeError);
  // A list memoized and appended to itself.
  CHECK_THROWS_AS(unpickle(unhex("80045d9468006185" "2e")), mpp::DecodeError);
  // Doubling through the memo: 2^40 items if expanded naively.
  std::string bomb = "\x80\x04" "K\x01";
  for (int k = 0; k < 40; ++k) bomb += "\x94h" + std::string(1, static_cast<char>(k)) + "\x86";
  bomb += ".";
  CHECK_THROWS_WITH(unpickle(bomb), Catch::Contains("values"));
  CHECK_THROWS_AS(unpickle(""), mpp::DecodeError);
  CHECK_THROWS_AS(unpickle(std::string("\x80\x04\x8c\x02\xff\xfe.", 7)), mpp::DecodeError);  // bad UTF-8
}

TEST_CASE("mutated vectors: the decoder returns or throws DecodeError, nothing else") {
  auto corpus = all_pickles();
  std::mt19937 rng(12345);
  int decoded = 0, refused = 0;
  for (int iter = 0; iter < 40000; ++iter) {
    std::string p = corpus[rng() % corpus.size()];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !p.empty(); ++e) {
      std::size_t at = rng() % p.size();
      switch (rng() % 5) {
        case 0: p[at] = static_cast<char>(p[at] ^ (1 << (rng() % 8))); break;
        case 1: p[at] = static_cast<char>(rng()); break;
        case 2: p.resize(at); break;
        case 3: p.insert(at, 1, static_cast<char>(rng())); break;
        case 4: p.insert(at, p.substr(rng() % p.size(), rng() % 16)); break;
      }
    }
    try {
      PyObject v = unpickle(p);
      (void)repr(v);
      (void)pickle(v);
      ++decoded;
    } catch (const mpp::DecodeError&) {
      ++refused;
    }
  }
  CHECK(refused > 1000);
  CHECK(decoded > 100);
}
