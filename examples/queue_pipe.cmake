# Interprocess communication: Queue and Pipe.
mpp_example(ipc_queue PASS_REGEX "^\\[1, 2, 3, 4\\]\n$")
mpp_example(ipc_pipe PASS_REGEX "^\\[1, 2, 3\\]\n\\[4, 5, 6\\]\nthe child closed its end\n$")
