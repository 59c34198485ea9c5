# Distributed processes across languages: every pairing of the C++ task_master/task_worker
# and Python's classic BaseManager scripts (examples/python/, run with
# Debian's /usr/bin/python3) works one task queue over the wire protocol of
# multiprocessing.managers. net_pair.sh starts the master on a free port and the worker once
# the master listens.
foreach(name task_master task_worker net_shared_queue)
  add_executable(${name} ${name}.cpp)
  target_link_libraries(${name} PRIVATE mpp::mpp mpp_warnings)
endforeach()

set(_net_pair ${CMAKE_CURRENT_SOURCE_DIR}/net_pair.sh)
set(_py_dir ${CMAKE_CURRENT_SOURCE_DIR}/python)
add_test(NAME "example: net mpp master + mpp worker"
         COMMAND ${_net_pair} $<TARGET_FILE:task_master> -- $<TARGET_FILE:task_worker> --delay 0)
find_program(MPP_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(MPP_PYTHON3)
  add_test(NAME "example: net python master + mpp worker"
           COMMAND ${_net_pair} ${MPP_PYTHON3} -u ${_py_dir}/task_master.py -- $<TARGET_FILE:task_worker> --delay 0)
  add_test(NAME "example: net mpp master + python worker"
           COMMAND ${_net_pair} $<TARGET_FILE:task_master> -- ${MPP_PYTHON3} -u ${_py_dir}/task_worker.py --delay 0)
  add_test(NAME "example: net python master + python worker"
           COMMAND ${_net_pair} ${MPP_PYTHON3} -u ${_py_dir}/task_master.py -- ${MPP_PYTHON3} -u ${_py_dir}/task_worker.py --delay 0)
endif()
# The master serves shared-memory mpp::Queues; a local process consumes beside the remote worker.
add_test(NAME "example: net shared-memory master + mpp worker"
         COMMAND ${_net_pair} $<TARGET_FILE:net_shared_queue> -- $<TARGET_FILE:task_worker> --delay 0)
set(_net_tests "example: net mpp master + mpp worker" "example: net shared-memory master + mpp worker")
if(MPP_PYTHON3)
  add_test(NAME "example: net shared-memory master + python worker"
           COMMAND ${_net_pair} $<TARGET_FILE:net_shared_queue> -- ${MPP_PYTHON3} -u ${_py_dir}/task_worker.py --delay 0)
  list(APPEND _net_tests "example: net python master + mpp worker" "example: net mpp master + python worker"
       "example: net python master + python worker" "example: net shared-memory master + python worker")
endif()
set_tests_properties(${_net_tests} PROPERTIES TIMEOUT 90 LABELS example PASS_REGULAR_EXPRESSION "net_pair: 10 results")
# --help, an unknown flag, a refused connection and a wrong authkey: usage or one error line,
# exit status 0, 2 or 1, never an abort.
add_test(NAME "example: net command-line errors"
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/net_errors.sh $<TARGET_FILE:task_master> $<TARGET_FILE:task_worker>
                 $<TARGET_FILE:net_shared_queue>)
set_tests_properties("example: net command-line errors" PROPERTIES TIMEOUT 60 LABELS example
                     PASS_REGULAR_EXPRESSION "net_errors: all checks passed")
