# The Python side of benchmarks/micro/net_bench.cpp: Python's own manager server, serving
# one queue.Queue as "get_queue", the way examples/python/task_master.py does.
#
#   net_server.py [--port 0] [--authkey bench]
#       serves in this process (Server.serve_forever, a thread per connection, as
#       BaseManager.start() does in its child) and prints "listening on PORT" once it listens.
#   net_server.py --load CLIENTS REQUESTS [--port P]
#       Python clients instead: CLIENTS processes, each with its own proxy, make REQUESTS
#       calls (put, then get, alternately) against the server on port P; prints one line of
#       JSON with requests/s and latency percentiles.
import argparse
import json
import queue
import sys
import time
from multiprocessing import Process, Queue as MPQueue
from multiprocessing.managers import BaseManager

shared = queue.Queue()


def get_queue():
    return shared


class QueueManager(BaseManager):
    pass


def client(port, authkey, cid, requests, out):
    m = QueueManager(address=('127.0.0.1', port), authkey=authkey)
    m.connect()
    q = m.get_queue()
    lat = []
    total = 0
    for i in range(requests // 2):
        t0 = time.perf_counter()
        q.put(cid * 1000000 + i)
        t1 = time.perf_counter()
        total += q.get()
        t2 = time.perf_counter()
        lat += [t1 - t0, t2 - t1]
    out.put((lat, total))


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--port', type=int, default=0)
    p.add_argument('--authkey', default='bench')
    p.add_argument('--load', nargs=2, type=int, metavar=('CLIENTS', 'REQUESTS'))
    a = p.parse_args()
    authkey = a.authkey.encode()
    QueueManager.register('get_queue', callable=get_queue)
    if a.load:
        clients, requests = a.load
        out = MPQueue()
        procs = [Process(target=client, args=(a.port, authkey, c, requests, out)) for c in range(clients)]
        t0 = time.perf_counter()
        for pr in procs:
            pr.start()
        results = [out.get() for _ in procs]
        wall = time.perf_counter() - t0
        for pr in procs:
            pr.join()
        lat = sorted(x for r in results for x in r[0])
        print(json.dumps({'requests': len(lat), 'seconds': wall, 'req_per_s': len(lat) / wall,
                          'p50_us': lat[len(lat) // 2] * 1e6, 'p99_us': lat[int(len(lat) * 0.99)] * 1e6,
                          'sum': sum(r[1] for r in results)}), flush=True)
        return
    server = QueueManager(address=('127.0.0.1', a.port), authkey=authkey).get_server()
    print('listening on %d' % server.address[1], flush=True)
    server.serve_forever()


if __name__ == '__main__':
    main()
