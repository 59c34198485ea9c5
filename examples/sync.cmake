# Locks and shared values (sync.hpp, value.hpp, array.hpp).
# Ten whole lines, in any order: a torn line ("hello hello world ...") fails the regex.
string(REPEAT "hello world [0-9]\n" 10 _mpp_ten_lines)
mpp_example(lock_print PASS_REGEX "^${_mpp_ten_lines}$")
mpp_example(shared_value PASS_REGEX "^3\\.1415927\n\\[0, -1, -2, -3, -4, -5, -6, -7, -8, -9\\]\n$")
