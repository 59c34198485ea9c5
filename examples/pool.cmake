# Pool.apply (sequential), apply_async (concurrent), callbacks.
mpp_example(pool_apply PASS_REGEX "in process [0-9]+\nend\n" FAIL_REGEX "end\nin process")
mpp_example(pool_apply_async PASS_REGEX "^end\n(in process [0-9]+\n)+$" FAIL_REGEX "in process[^\n]*\nend")
# Two workers print at once, so their lines may pair differently; the callbacks come after
# "end", three of them, each with the main process's pid.
mpp_example(pool_callback
            PASS_REGEX "^Main process [0-9]+\nend\n((in process|-->exec done: None) [0-9]+\n)+$"
            FAIL_REGEX "-->exec done[^\n]*\n(.*\n)?end")
