# System libraries, all from Debian packages (scripts/install_deps.sh). No vendored code.

# An offline machine without the -dev packages (the GPU machine) uses a prefix of unpacked .debs
# (scripts/fetch_gpu_debs.sh, e.g. third_party/debs/root/usr). It is searched before the system
# for every package below; unset, nothing changes.
set(LOOM_DEPS_PREFIX "" CACHE PATH
    "Prefix searched first for GoogleTest, OpenBLAS, nlohmann_json and zlib (unpacked .debs)")
if(LOOM_DEPS_PREFIX)
  if(NOT EXISTS "${LOOM_DEPS_PREFIX}")
    message(FATAL_ERROR "LOOM_DEPS_PREFIX=${LOOM_DEPS_PREFIX} does not exist")
  endif()
  list(PREPEND CMAKE_PREFIX_PATH "${LOOM_DEPS_PREFIX}")
  set(ZLIB_ROOT "${LOOM_DEPS_PREFIX}")
  set(GTest_ROOT "${LOOM_DEPS_PREFIX}")
  set(nlohmann_json_ROOT "${LOOM_DEPS_PREFIX}")
  message(STATUS "loom: dependency prefix ${LOOM_DEPS_PREFIX}")
endif()

find_package(OpenMP REQUIRED)
find_package(ZLIB REQUIRED)
find_package(nlohmann_json 3 REQUIRED)

# OpenBLAS (cblas_sgemm / cblas_dgemm) for CPU matrix products.
# The OpenMP build of OpenBLAS comes first: it shares loom's OpenMP thread pool, where the
# pthread build's own spinning threads fight loom's for the same cores (measured ~2x slower).
find_path(LOOM_CBLAS_INCLUDE cblas.h
          PATH_SUFFIXES x86_64-linux-gnu/openblas-openmp openblas-openmp openblas openblas-pthread
          REQUIRED)
find_library(LOOM_OPENBLAS_LIB NAMES openblas
             PATH_SUFFIXES x86_64-linux-gnu/openblas-openmp openblas-openmp openblas-pthread REQUIRED)
add_library(loom_blas INTERFACE)
if(LOOM_DEPS_PREFIX)
  # Only loom's own sources include cblas.h; an exported path into the source tree is refused.
  target_include_directories(loom_blas INTERFACE $<BUILD_INTERFACE:${LOOM_CBLAS_INCLUDE}>)
else()
  target_include_directories(loom_blas INTERFACE ${LOOM_CBLAS_INCLUDE})
endif()
target_link_libraries(loom_blas INTERFACE ${LOOM_OPENBLAS_LIB})

# CLI11 (header-only) for the `loom` command.
find_path(LOOM_CLI11_INCLUDE CLI/CLI.hpp REQUIRED)
add_library(loom_cli11 INTERFACE)
target_include_directories(loom_cli11 INTERFACE $<BUILD_INTERFACE:${LOOM_CLI11_INCLUDE}>)

if(LOOM_WITH_CUDA)
  # cuDNN and NCCL: system locations, the CUDA toolkit, or the Python wheels (nvidia.cudnn,
  # nvidia.nccl) that GPU machines often carry. LOOM_CUDNN_ROOT / LOOM_NCCL_ROOT override.
  set(_loom_hints ${LOOM_CUDNN_ROOT} ${LOOM_NCCL_ROOT} ${CUDAToolkit_LIBRARY_ROOT} /usr/local/cuda)
  file(GLOB _loom_wheel_roots /usr/local/lib/python3*/*-packages/nvidia/* /usr/lib/python3*/*-packages/nvidia/*
       $ENV{HOME}/.local/lib/python3*/site-packages/nvidia/* /opt/conda/lib/python3*/site-packages/nvidia/*
       /root/.pyenv/versions/*/lib/python3*/site-packages/nvidia/*
       /opt/*/.venv/lib/python3*/site-packages/nvidia/* /opt/*/lib/python3*/site-packages/nvidia/*)
  list(APPEND _loom_hints ${_loom_wheel_roots})
  find_path(LOOM_CUDNN_INCLUDE cudnn.h HINTS ${_loom_hints} PATH_SUFFIXES include targets/x86_64-linux/include)
  find_library(LOOM_CUDNN_LIB NAMES cudnn libcudnn.so.9 HINTS ${_loom_hints} PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu)
  find_path(LOOM_NCCL_INCLUDE nccl.h HINTS ${_loom_hints} PATH_SUFFIXES include)
  find_library(LOOM_NCCL_LIB NAMES nccl libnccl.so.2 HINTS ${_loom_hints} PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu)
  if(NOT LOOM_CUDNN_INCLUDE OR NOT LOOM_CUDNN_LIB)
    message(FATAL_ERROR "cuDNN not found (set LOOM_CUDNN_ROOT)")
  endif()
  if(NOT LOOM_NCCL_INCLUDE OR NOT LOOM_NCCL_LIB)
    message(FATAL_ERROR "NCCL not found (set LOOM_NCCL_ROOT)")
  endif()
  message(STATUS "loom: cuDNN ${LOOM_CUDNN_LIB}, NCCL ${LOOM_NCCL_LIB}")
  add_library(loom_cudnn INTERFACE)
  target_include_directories(loom_cudnn INTERFACE ${LOOM_CUDNN_INCLUDE})
  target_link_libraries(loom_cudnn INTERFACE ${LOOM_CUDNN_LIB})
  add_library(loom_nccl INTERFACE)
  target_include_directories(loom_nccl INTERFACE ${LOOM_NCCL_INCLUDE})
  target_link_libraries(loom_nccl INTERFACE ${LOOM_NCCL_LIB})

  # cudnn_frontend (header-only; pip install nvidia-cudnn-frontend puts it in site-packages/include)
  # for cuDNN's fused attention. Optional: without it AttentionImplementation::CuDnn says so.
  execute_process(COMMAND python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"
                  OUTPUT_VARIABLE _loom_purelib OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  find_path(LOOM_CUDNN_FRONTEND_INCLUDE cudnn_frontend.h
            HINTS ${LOOM_CUDNN_FRONTEND_ROOT} ${_loom_purelib}/include PATH_SUFFIXES include)
  if(LOOM_CUDNN_FRONTEND_INCLUDE)
    message(STATUS "loom: cudnn_frontend ${LOOM_CUDNN_FRONTEND_INCLUDE}")
  else()
    message(STATUS "loom: cudnn_frontend not found: cuDNN attention is not built "
                   "(pip install nvidia-cudnn-frontend)")
  endif()
endif()
