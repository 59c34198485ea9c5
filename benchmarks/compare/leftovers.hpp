// The suite's own files, outside mpp's segments: Boost.Interprocess segments and message
// queues in /dev/shm and the corpus in the temporary directory, all named
// "mpp-bench-<pid>-..." after the process that made them. mpp removes its own segments
// however the suite ends (docs/design/segment-lifetime.md); nothing removes these but the
// code that made them, so a suite stopped midway would leave them behind.
#pragma once

namespace bench {

// Removes the files of earlier runs whose process is gone (killed by SIGKILL, or the
// machine stopped): "mpp-bench-<pid>-..." in /dev/shm and the temporary directory, where no
// process <pid> exists. Also the Python side's "mpp-bench-<pid>" segments.
void remove_stale_bench_files();

// From now on, SIGINT, SIGTERM and SIGHUP (Ctrl-C, a kill, a closed terminal) first remove
// this process's files, then end it as the signal would have. The handler only makes
// async-signal-safe calls (open, getdents64, unlinkat, close).
void remove_bench_files_on_signal();

}  // namespace bench
