"""The tutorial's section IX example, ported to the module, runs and prints what it should."""
import ast
import os
import subprocess
import sys

from conftest import SOURCE_DIR


def test_manager_dict_list_example():
    script = os.path.join(SOURCE_DIR, "examples", "python", "manager_dict_list.py")
    out = subprocess.run([sys.executable, script], check=True, capture_output=True, text=True, timeout=60).stdout
    lines = out.splitlines()
    assert lines[-1] == "10 pids appended"
    final = ast.literal_eval(lines[-2])
    assert final[:5] == [0, 1, 2, 3, 4] and len(final) == 15 and len(set(final[5:])) == 10
    d = ast.literal_eval(lines[-3])
    assert 1 <= len(d) <= 10 and all(1 <= k <= 50 and 51 <= v <= 100 for k, v in d.items())
    assert len(lines) == 13  # ten children's lists, then the dict, the list and the count
