# Processes: fork, a target, a subclass, parallel runs, data isolation, a daemon.
mpp_example(fork_basics PASS_REGEX "I am child process [0-9]+ my parents is [0-9]+")
mpp_example(process_target PASS_REGEX "Run child process test \\([0-9]+\\)\\.\\.\\..*Child process end\\.")
mpp_example(process_subclass PASS_REGEX "Run child process P-1 \\([0-9]+\\)\\.\\.\\..*P-1 is done")
mpp_example(data_isolation
            PASS_REGEX "current x value is 10.*The value of x is 100\\."
            FAIL_REGEX "The value of x is 10\\.")
# About 3 s, not 6: anything from 3.0 to 4.999 s passes.
mpp_example(parallel_processes PASS_REGEX "Process 3 is done.*elapsed: [34]\\.[0-9]+ s")
# The non-daemon child finishes; the daemon is terminated before it can.
mpp_example(daemon_process PASS_REGEX "Child process is done" FAIL_REGEX "Daemon is done")
