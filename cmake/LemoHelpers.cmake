# lemo_add_test(NAME <name> SOURCES <files...> LIBS <targets...> [LABELS <labels...>]
#               [TIMEOUT <seconds per test>] [PCH <headers...> | PCH_FROM <test target>])
# One GoogleTest executable, registered with CTest test-by-test. Labels: unit, e2e, gpu, slow.
function(lemo_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT;PCH_FROM" "SOURCES;LIBS;LABELS;PCH" ${ARGN})
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gmock GTest::gtest_main)
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
  if(T_PCH)
    target_precompile_headers(${T_NAME} PRIVATE ${T_PCH})
  elseif(T_PCH_FROM)
    # Test executables share one precompiled header (they compile with the same flags).
    target_precompile_headers(${T_NAME} REUSE_FROM ${T_PCH_FROM})
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 1500)
  endif()
  gtest_discover_tests(${T_NAME}
    DISCOVERY_MODE PRE_TEST
    PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT})
  # CMake 3.25's gtest_discover_tests splits a list-valued ENVIRONMENT into
  # separate arguments (only the first variable would survive), so set it from
  # a script CTest runs after the discovered tests are defined.
  set(_env "LEMO_PYTHON=${LEMO_PYTHON};LEMO_SOURCE_DIR=${PROJECT_SOURCE_DIR};LEMO_BIN_DIR=${CMAKE_RUNTIME_OUTPUT_DIRECTORY}")
  set(_env_file "${CMAKE_CURRENT_BINARY_DIR}/${T_NAME}_env.cmake")
  file(WRITE "${_env_file}"
    "if(${T_NAME}_TESTS)\n"
    "  set_tests_properties(\${${T_NAME}_TESTS} PROPERTIES ENVIRONMENT \"${_env}\")\n"
    "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${_env_file}")
endfunction()
