# Optional MPI for data parallelism between CPU processes (train/dist/mpi_communicator.cc).
# LOOM_MPI=AUTO (on when an MPI is found), ON (required) or OFF. Sets LOOM_WITH_MPI and, once the
# `loom` target exists, links it to MPI and defines LOOM_MPI=0/1 on it.
#
# Included from the top-level CMakeLists.txt (after add_library(loom)) with
#   include(cmake/mpi.cmake)
# It may also be included before `loom` exists (e.g. -DCMAKE_PROJECT_INCLUDE=.../cmake/mpi.cmake):
# the linking is then deferred to the end of the top-level directory.
include_guard(GLOBAL)

set(LOOM_MPI AUTO CACHE STRING "MPI for data parallelism between CPU processes: AUTO, ON or OFF")
set_property(CACHE LOOM_MPI PROPERTY STRINGS AUTO ON OFF)

set(LOOM_WITH_MPI OFF)
if(NOT LOOM_MPI STREQUAL "OFF")
  # loom is a C++ project (FindMPI's C component needs the C language); loom calls only MPI's C
  # API, so the deprecated C++ bindings are skipped.
  set(MPI_CXX_SKIP_MPICXX ON)
  find_package(MPI COMPONENTS CXX QUIET)
  if(MPI_CXX_FOUND)
    set(LOOM_WITH_MPI ON)
  elseif(LOOM_MPI STREQUAL "ON")
    message(FATAL_ERROR "LOOM_MPI=ON but no MPI was found (install libopenmpi-dev openmpi-bin)")
  endif()
endif()
message(STATUS "loom: MPI ${LOOM_WITH_MPI} (mpiexec: ${MPIEXEC_EXECUTABLE})")

function(_loom_link_mpi)
  if(NOT TARGET loom)
    return()
  endif()
  if(LOOM_WITH_MPI)
    target_link_libraries(loom PRIVATE MPI::MPI_CXX)
    target_compile_definitions(loom PRIVATE LOOM_MPI=1)
  else()
    target_compile_definitions(loom PRIVATE LOOM_MPI=0)
  endif()
endfunction()

if(TARGET loom)
  _loom_link_mpi()
else()
  cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL _loom_link_mpi)
  # Developer builds that inject this file before the tree includes cmake/dist_tests.cmake.
  if(LOOM_DIST_DEV_TESTS)
    cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL include
                   ${CMAKE_SOURCE_DIR}/cmake/dist_tests.cmake)
  endif()
endif()
