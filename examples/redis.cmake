# The distributed task master and worker over Redis: redis_task_master and
# redis_task_worker, run together by redis_task.sh against the server of MPP_REDIS_URL.
if(TARGET mpp::redis)
  foreach(name redis_task_master redis_task_worker)
    add_executable(${name} ${name}.cpp)
    target_link_libraries(${name} PRIVATE mpp::redis mpp_warnings)
  endforeach()
  add_test(NAME "example: redis_task"
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/redis_task.sh
                   $<TARGET_FILE:redis_task_master> $<TARGET_FILE:redis_task_worker>)
  set_tests_properties("example: redis_task" PROPERTIES
    TIMEOUT 120 LABELS example
    PASS_REGULAR_EXPRESSION "Result: [0-9]+ \\* [0-9]+ = [0-9]+.*master exit.*master and both workers exited 0"
    SKIP_REGULAR_EXPRESSION "SKIPPED: ")
endif()
