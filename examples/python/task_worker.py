# task_worker.py — Python's classic distributed-processes worker, unchanged except for flags:
# --host, --port, --authkey, and --delay (seconds of "work" per task; 1 by default).
# Its peer can be task_master.py or mpp's examples/task_master.
import argparse
from multiprocessing.managers import BaseManager
from queue import Queue
from queue import Empty
import time

class QueueManager(BaseManager):
    pass

if __name__ == '__main__':
    parser = argparse.ArgumentParser()
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=5000)
    parser.add_argument('--authkey', default='abc')
    parser.add_argument('--delay', type=float, default=1.0)
    args = parser.parse_args()

    # Get it from the server, so you only need to provide the name when registering, that is, the interface name.
    QueueManager.register('get_task_queue')
    QueueManager.register('get_result_queue')

    # Connect to the server, the task_master.py machine
    server_addr = args.host
    manager = QueueManager(address=(server_addr, args.port), authkey=args.authkey.encode())
    manager.connect()

    # Get Queue objects
    task = manager.get_task_queue()
    result = manager.get_result_queue()

    # Extract tasks from the queue and insert processing results into the result queue
    for i in range(10):
        try:
            n = task.get(timeout=1)
            print('run task %d*%d'%(n,n))
            r = '%d * %d = %d'%(n,n,n*n)
            time.sleep(args.delay)
            result.put(r)
        except Empty:
            print('task queue is empty')
    print('worker exit')
