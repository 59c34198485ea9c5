// Access to the captured Python manager traffic in tests/data/python-wire-vectors (see the
// README there): the frames.tsv rows, the raw per-connection streams, pickle-samples.tsv.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace mpp::test {

inline std::filesystem::path wire_vectors_dir() {
  return std::filesystem::path(__FILE__).parent_path().parent_path() / "data" / "python-wire-vectors";
}

inline std::string unhex(const std::string& hex) {
  std::string out;
  int hi = -1;
  for (char c : hex) {
    int v;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
    else continue;
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<char>(hi * 16 + v));
      hi = -1;
    }
  }
  return out;
}

// The decoded column escapes backslash, tab and newline.
inline std::string unescape_tsv(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      char n = s[++i];
      out.push_back(n == 'n' ? '\n' : n == 't' ? '\t' : n);
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Rows of a TSV file without its header, split on tabs.
inline std::vector<std::vector<std::string>> read_tsv(const std::filesystem::path& p) {
  std::ifstream in(p);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  std::vector<std::vector<std::string>> rows;
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::vector<std::string> cols;
    std::size_t start = 0;
    while (true) {
      auto tab = line.find('\t', start);
      cols.push_back(line.substr(start, tab - start));
      if (tab == std::string::npos) break;
      start = tab + 1;
    }
    rows.push_back(std::move(cols));
  }
  return rows;
}

inline std::string read_hex_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return unhex(ss.str());
}

inline const std::vector<std::string>& wire_scenarios() {
  static const std::vector<std::string> s = {"py311", "py313", "w311-m313", "w313-m311", "w311-m37",
                                             "probe311", "probe313"};
  return s;
}

}  // namespace mpp::test
