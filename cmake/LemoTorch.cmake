# LibTorch from the pinned torch wheel in LEMO_PYTHON's environment.
#
# GPU builds (LEMO_ENABLE_CUDA=ON) use the wheel's own TorchConfig.cmake, which brings CUDA.
# CPU builds link only libtorch_cpu + libc10 through a small imported target: the wheel's
# TorchConfig always pulls in libtorch_cuda and its CUDA libraries, which a CPU build never calls.
# Both paths give the same target name, lemo::torch.

execute_process(
  COMMAND ${LEMO_PYTHON} -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('torch').origin))"
  OUTPUT_VARIABLE LEMO_TORCH_DIR OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _torch_rc)
if(NOT _torch_rc EQUAL 0 OR NOT EXISTS "${LEMO_TORCH_DIR}/include/torch")
  message(FATAL_ERROR "LibTorch not found through LEMO_PYTHON=${LEMO_PYTHON}; run scripts/bootstrap")
endif()
message(STATUS "LibTorch: ${LEMO_TORCH_DIR}")

# The wheel's include/ also ships an old protobuf (include/google/protobuf) that shadows
# Debian's and breaks every translation unit that includes both LibTorch and our generated
# .pb.h (the worker agent). Expose the wheel's headers through a mirror of symlinks without it.
set(LEMO_TORCH_INCLUDE "${CMAKE_BINARY_DIR}/torch-include")
file(MAKE_DIRECTORY "${LEMO_TORCH_INCLUDE}")
file(GLOB _torch_include_entries RELATIVE "${LEMO_TORCH_DIR}/include" "${LEMO_TORCH_DIR}/include/*")
foreach(_entry ${_torch_include_entries})
  if(NOT _entry STREQUAL "google" AND NOT EXISTS "${LEMO_TORCH_INCLUDE}/${_entry}")
    file(CREATE_LINK "${LEMO_TORCH_DIR}/include/${_entry}" "${LEMO_TORCH_INCLUDE}/${_entry}" SYMBOLIC)
  endif()
endforeach()

if(LEMO_ENABLE_CUDA)
  enable_language(CUDA)
  list(APPEND CMAKE_PREFIX_PATH "${LEMO_TORCH_DIR}/share/cmake")
  # TorchConfig appends -gencode flags for every architecture it detects (eleven, sm_50 to sm_120a,
  # on a machine without a GPU) to CMAKE_CUDA_FLAGS, which would compile each kernel eleven times.
  # Our kernels are for Hopper (lemo_kernels_cuda in kernels/CMakeLists.txt).
  set(TORCH_CUDA_ARCH_LIST "9.0a" CACHE STRING "Architectures TorchConfig adds to CMAKE_CUDA_FLAGS")
  find_package(Torch REQUIRED)
  add_library(lemo_torch INTERFACE)
  target_link_libraries(lemo_torch INTERFACE ${TORCH_LIBRARIES})
  list(TRANSFORM TORCH_INCLUDE_DIRS REPLACE "^${LEMO_TORCH_DIR}/include$" "${LEMO_TORCH_INCLUDE}")
  target_include_directories(lemo_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
  target_compile_definitions(lemo_torch INTERFACE LEMO_WITH_CUDA=1)
else()
  add_library(lemo_torch INTERFACE)
  target_include_directories(lemo_torch SYSTEM INTERFACE
    "${LEMO_TORCH_INCLUDE}" "${LEMO_TORCH_INCLUDE}/torch/csrc/api/include")
  target_link_libraries(lemo_torch INTERFACE
    "${LEMO_TORCH_DIR}/lib/libtorch_cpu.so" "${LEMO_TORCH_DIR}/lib/libc10.so" Threads::Threads)
  # The wheel is built with the C++11 ABI.
  target_compile_definitions(lemo_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=1)
endif()
# gRPC's pkg-config flags put -pthread (which defines _REENTRANT) on every target that links it.
# GCC refuses a precompiled header built under other macros, so without this the engine's
# <torch/torch.h> PCH was silently skipped by lemo_worker_agent (REUSE_FROM), whose sources then
# parsed all of LibTorch each. Every LibTorch consumer compiles with -pthread instead.
target_compile_options(lemo_torch INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-pthread>)
add_library(lemo::torch ALIAS lemo_torch)
