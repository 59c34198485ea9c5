# task_master.py — Python's classic distributed-processes master (a BaseManager serving a
# task queue and a result queue over TCP), unchanged except for flags: --host, --port (0
# picks a free port) and --authkey, and one line printed once the manager listens, so
# scripts can start a worker without guessing when it is ready.
# Its peer can be task_worker.py or mpp's examples/task_worker.
import argparse
from multiprocessing.managers import BaseManager
from queue import Queue
import random
import time

task_queue = Queue()
result_queue = Queue()

class QueueManager(BaseManager):
        pass

def get_task_queue():
    global task_queue
    return task_queue


def get_result_queue():
    global result_queue
    return result_queue


if __name__ == '__main__':
    parser = argparse.ArgumentParser()
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=5000)
    parser.add_argument('--authkey', default='abc')
    args = parser.parse_args()

    # Register two queues on the network, and the calltable parameter associates the Queue object
    QueueManager.register('get_task_queue', callable=get_task_queue)
    QueueManager.register('get_result_queue', callable=get_result_queue)

    # Create a queue manager, bind port 5000, and set the password to abc
    manager = QueueManager(address=(args.host, args.port), authkey=args.authkey.encode())
    manager.start()
    print('master listening on %s:%d' % manager.address, flush=True)

    # Getting Queue Objects through the Network
    task = manager.get_task_queue()
    result = manager.get_result_queue()

    # Put the task in
    for i in range(10):
        n = random.randint(0,1000)
        print('Put Task %d'%n)
        task.put(n)

    # Getting results from the result queue
    print('Try get results')
    for i in range(10):
        r = result.get()
        print('Result: %s' % r)

    manager.shutdown()
    print('master exit')
