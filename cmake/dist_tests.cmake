# Multi-process data-parallel tests: loom_dp_test (tests/dist/dp_train_main.cc) run under mpirun
# with 2 and 4 ranks, and under `loom launch` (loom's TCP store). Included from
# tests/CMakeLists.txt with
#   include(${PROJECT_SOURCE_DIR}/cmake/dist_tests.cmake)
# Without MPI (or without mpirun) the mpirun entries are registered as skipped, not failed.
include_guard(GLOBAL)
include(${CMAKE_CURRENT_LIST_DIR}/mpi.cmake)

add_executable(loom_dp_test ${PROJECT_SOURCE_DIR}/tests/dist/dp_train_main.cc)
target_link_libraries(loom_dp_test PRIVATE loom)
target_include_directories(loom_dp_test PRIVATE ${PROJECT_SOURCE_DIR})
target_compile_options(loom_dp_test PRIVATE ${LOOM_WARNINGS})

# mpirun runs as root in CI containers and with more ranks than cores; TCP between ranks avoids
# shared-memory transports that containers often restrict. The short timeout makes a dead or
# hung rank fail the test in seconds.
set(_loom_mpirun_flags --oversubscribe --bind-to none --mca btl self,tcp)
execute_process(COMMAND id -u OUTPUT_VARIABLE _loom_uid OUTPUT_STRIP_TRAILING_WHITESPACE)
if(_loom_uid STREQUAL "0")
  list(APPEND _loom_mpirun_flags --allow-run-as-root)
endif()

function(loom_dist_test name ranks)
  set(test_name "dist.${name}.np${ranks}")
  if(LOOM_WITH_MPI AND MPIEXEC_EXECUTABLE)
    add_test(NAME ${test_name}
             COMMAND ${MPIEXEC_EXECUTABLE} -n ${ranks} ${_loom_mpirun_flags}
                     -x LOOM_DIST_TIMEOUT=5 $<TARGET_FILE:loom_dp_test> ${ARGN})
  else()
    add_test(NAME ${test_name} COMMAND ${CMAKE_COMMAND} -E echo "SKIP: loom built without MPI or mpirun not found")
    set_tests_properties(${test_name} PROPERTIES SKIP_REGULAR_EXPRESSION "SKIP:")
  endif()
  set_tests_properties(${test_name} PROPERTIES LABELS "cpu;dist" TIMEOUT 60 PROCESSORS ${ranks})
endfunction()

loom_dist_test(collectives 2 collectives)
loom_dist_test(collectives 4 collectives)
loom_dist_test(ddp 2 ddp)
loom_dist_test(ddp 4 ddp)
loom_dist_test(sync_batchnorm 2 batchnorm)
loom_dist_test(sync_batchnorm 3 batchnorm)
# Unequal local batches (3 and 5 examples; 3, 5, 7 on 3 ranks) weighted by their local counts.
loom_dist_test(sync_batchnorm_unequal 2 batchnorm_unequal)
loom_dist_test(sync_batchnorm_unequal 3 batchnorm_unequal)
# The overlapped gradient all-reduce equals the plain pmean and starts before backward ends.
loom_dist_test(overlap 2 overlap)
loom_dist_test(overlap 4 overlap)
# ZeRO-1: sharded optimizer state gives the unsharded numbers with 1/N of the state per rank.
loom_dist_test(zero 2 zero)
loom_dist_test(zero 3 zero)
# A rank that hangs: rank 0 must report DistError naming the collective within the timeout.
loom_dist_test(hung_rank 2 hang)
if(TEST dist.hung_rank.np2 AND LOOM_WITH_MPI AND MPIEXEC_EXECUTABLE)
  set_tests_properties(dist.hung_rank.np2 PROPERTIES
    PASS_REGULAR_EXPRESSION "DistError caught on rank 0: dist \\(mpi\\): all_reduce.*did not complete within")
endif()
# A rank that exits abruptly mid-run: the job must end (non-zero) instead of hanging.
loom_dist_test(dead_rank 2 die)
if(TEST dist.dead_rank.np2 AND LOOM_WITH_MPI AND MPIEXEC_EXECUTABLE)
  set_tests_properties(dist.dead_rank.np2 PROPERTIES WILL_FAIL TRUE)
endif()

# loom's own launcher with its TCP store (no MPI needed): the launcher alone as loom_launch_test
# (the same code as `loom launch`).
add_executable(loom_launch_test ${PROJECT_SOURCE_DIR}/tests/dist/launch_main.cc
               ${PROJECT_SOURCE_DIR}/apps/launch.cc)
target_link_libraries(loom_launch_test PRIVATE loom loom_cli11)
target_include_directories(loom_launch_test PRIVATE ${PROJECT_SOURCE_DIR})
target_compile_options(loom_launch_test PRIVATE ${LOOM_WARNINGS})
foreach(_mode ddp batchnorm batchnorm_unequal collectives overlap zero)
  add_test(NAME dist.launch_${_mode}.np2
           COMMAND loom_launch_test -n 2 --master-port 0 -- $<TARGET_FILE:loom_dp_test> ${_mode})
  set_tests_properties(dist.launch_${_mode}.np2 PROPERTIES LABELS "cpu;dist" TIMEOUT 60
                       PROCESSORS 2 ENVIRONMENT LOOM_DIST_TIMEOUT=10)
endforeach()
# A rank that dies under the launcher: the launcher stops the others and fails.
add_test(NAME dist.launch_dead_rank.np2
         COMMAND loom_launch_test -n 2 --master-port 0 --grace 2 -- $<TARGET_FILE:loom_dp_test> die)
set_tests_properties(dist.launch_dead_rank.np2 PROPERTIES LABELS "cpu;dist" TIMEOUT 30
                     PROCESSORS 2 ENVIRONMENT LOOM_DIST_TIMEOUT=5
                     PASS_REGULAR_EXPRESSION "loom launch: rank 1 failed \\(exit status 9\\)")
