# A Manager's dict and list shared by ten processes.
mpp_example(manager_dict_list PASS_REGEX "\\{[0-9]+: [0-9]+.*\\}\n\\[0, 1, 2, 3, 4, [0-9]+.*\\]\n10 pids appended")
