// For mpp's own forks that are not mpp::Process children (pool workers): gives the forked
// process its identity, as Process::start() does for its children.
#pragma once

#include <string>

#include "mpp/process.hpp"

namespace mpp::detail {

// In a freshly forked process: current_process() becomes `name` (daemon or not) and
// parent_process() becomes `parent`.
void become_forked_child(std::string name, bool daemon, const ProcessInfo& parent);

}  // namespace mpp::detail
