# The Python side of net_python_test.cpp, run with Debian's /usr/bin/python3.
#   serve: a multiprocessing.managers server with a dict, a list and a queue whose second
#          item is a datetime.date (outside mpp's pickle subset); prints "listening PORT" and
#          serves until a client sends 'shutdown'.
#   client PORT: a Python client of an mpp server's "get_list"; prints the slices it reads.
# Either way it exits by itself after 30 s, so a failed test leaves no process behind.
import datetime
import os
import queue
import sys
import threading
from multiprocessing.managers import BaseManager, DictProxy, ListProxy

_deadline = threading.Timer(30, lambda: os._exit(3))
_deadline.daemon = True
_deadline.start()
AUTHKEY = b"abc"

if sys.argv[1] == "serve":
    d = {"a": 1, "b": 2, "c": 3}
    lst = [10, 20, 30, 40]
    q = queue.Queue()
    for item in (5, datetime.date(2024, 1, 2), 7):
        q.put(item)

    class Server(BaseManager):
        pass

    Server.register("get_dict", callable=lambda: d, proxytype=DictProxy)
    Server.register("get_list", callable=lambda: lst, proxytype=ListProxy)
    Server.register("get_queue", callable=lambda: q)
    server = Server(address=("127.0.0.1", 0), authkey=AUTHKEY).get_server()
    print("listening", server.address[1], flush=True)
    server.serve_forever()
    os._exit(0)
else:
    class Client(BaseManager):
        pass

    Client.register("get_list", proxytype=ListProxy)
    m = Client(address=("127.0.0.1", int(sys.argv[2])), authkey=AUTHKEY)
    m.connect()
    lst = m.get_list()
    print("slices", lst[0:2], lst[-2:], lst[::2], lst[3:1:-1], lst[5:9], flush=True)
    os._exit(0)
