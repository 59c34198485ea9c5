// The workloads of the comparison suite (docs/benchmarks.md). Each adds its cases and their variants
// to the plan; the variants are named as below so the table, JSON and plot line them up.
#pragma once

#include "harness.hpp"

namespace bench {

// Variant names, in table order.
inline constexpr const char* kOneProcess = "1 process";  // the limit: no fork, no copy
inline constexpr const char* kMpp = "mpp";
inline constexpr const char* kIsolated = "isolated (pipes)";
inline constexpr const char* kPython = "python mp";
inline constexpr const char* kBoost = "boost.interprocess";
// Scan only: data built before fork in private memory, read copy-on-write by the workers.
inline constexpr const char* kInherited = "fork-inherited (COW)";

// Shown instead of a figure when the mpp feature a variant measures has not landed.
inline constexpr const char* kNotYet = "n/a (not yet)";

void add_scan(Plan& plan);       // 1 and 5: read-only dataset scanned by N workers
void add_wordcount(Plan& plan);  // 2 and 5: N workers counting words into one dict
void add_queues(Plan& plan);     // 3: producer -> consumer, 64 B / 4 KiB / 1 MiB
void add_pool(Plan& plan);       // 4: apply_async of tiny tasks, map over 1M items

}  // namespace bench
