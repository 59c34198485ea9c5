# Subprocesses: call, and an interactive child fed through communicate.
mpp_example(subprocess_call PASS_REGEX "\\$ uname -s\nLinux\nExit code 0\n")
mpp_example(subprocess_communicate
            PASS_REGEX "example.org   MX preference = 10, mail exchanger = mx10.example.org\n.*> \nExit code: 0\n"
            FAIL_REGEX "stderr:")
