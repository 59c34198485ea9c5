"""Tutorial section IX, with the mpp module: a dict and a list shared by ten processes.

Each child writes a random key and appends its pid; the parent prints both at the end.
As with multiprocessing.Manager(), but without a server process: the dict and the list
live in a shared-memory segment the children inherit, and every change is one locked step
(a C++ program could attach to the same segment and see them).

    PYTHONPATH=build/python python3 examples/python/manager_dict_list.py
"""
import multiprocessing
import os
import random

import mpp


def run(d, lst):
    d[random.randint(1, 50)] = random.randint(51, 100)
    lst.append(os.getpid())
    print(lst.tolist())


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")  # the children inherit the Manager's segment
    with mpp.Manager() as manage:
        d = manage.dict("d", key=int, value=int)
        lst = manage.list("l", item=int)
        lst.extend(range(5))  # Python: manage.list(range(5))
        p_list = []
        for i in range(10):
            p = multiprocessing.Process(target=run, args=(d, lst))
            p_list.append(p)
            p.start()
        for res in p_list:
            res.join()
        print(dict(d.items()))
        print(lst.tolist())
        print("%d pids appended" % (len(lst) - 5))
