# Helpers for the packaging tests (run_installed.cmake, run_subdirectory.cmake),
# which run as `cmake -P` scripts from CTest. Every step's output is kept and
# printed in full when the step fails.
#
# Inputs (-D): ARMOR_SOURCE_DIR, ARMOR_BINARY_DIR, ARMOR_CONFIG, ARMOR_VERSION,
# ARMOR_GENERATOR, ARMOR_MAKE_PROGRAM, ARMOR_CXX_COMPILER, ARMOR_CXX_COMPILER_ID,
# ARMOR_WITH_ASIO, ARMOR_WITH_FMT, CONSUMER_SOURCE_DIR, WORK_DIR.

foreach(_var IN ITEMS ARMOR_SOURCE_DIR ARMOR_BINARY_DIR ARMOR_GENERATOR ARMOR_CXX_COMPILER
                      CONSUMER_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "packaging test: ${_var} must be given with -D")
  endif()
endforeach()

# armor_step(<description> <command>...): runs the command; on failure stops
# the test with the command line, its exit status and everything it printed.
function(armor_step description)
  message(STATUS "step: ${description}")
  execute_process(COMMAND ${ARGN}
                  RESULT_VARIABLE _rc
                  OUTPUT_VARIABLE _out
                  ERROR_VARIABLE _out)
  if(NOT _rc STREQUAL "0")
    list(JOIN ARGN " " _cmd)
    # Plain message() prints the output verbatim; FATAL_ERROR would rewrap it.
    message(NOTICE
      "\n==== packaging test FAILED at step: ${description}\n"
      "command: ${_cmd}\n"
      "exit status: ${_rc}\n"
      "---- output ----\n${_out}\n---- end of output ----\n")
    message(FATAL_ERROR "packaging test failed at step: ${description} (output above)")
  endif()
endfunction()

# Configure, build and run (through the consumer's own CTest) a consumer
# project with the compiler and generator armor itself was built with.
function(armor_build_and_run_consumer build_dir)
  set(_configure "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${build_dir}"
      -G "${ARMOR_GENERATOR}"
      "-DCMAKE_CXX_COMPILER=${ARMOR_CXX_COMPILER}"
      -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
      "-DCONSUMER_WITH_ASIO=${ARMOR_WITH_ASIO}"
      "-DCONSUMER_WITH_FMT=${ARMOR_WITH_FMT}"
      ${ARGN})
  if(ARMOR_MAKE_PROGRAM)
    list(APPEND _configure "-DCMAKE_MAKE_PROGRAM=${ARMOR_MAKE_PROGRAM}")
  endif()
  set(_config_args "")
  set(_ctest_config_args "")
  if(ARMOR_CONFIG)
    list(APPEND _configure "-DCMAKE_BUILD_TYPE=${ARMOR_CONFIG}")
    set(_config_args --config "${ARMOR_CONFIG}")
    set(_ctest_config_args -C "${ARMOR_CONFIG}")
  endif()
  armor_step("configure the consumer" ${_configure})
  armor_step("build the consumer" "${CMAKE_COMMAND}" --build "${build_dir}" ${_config_args})
  armor_step("run the consumer" "${CMAKE_CTEST_COMMAND}" --test-dir "${build_dir}"
             ${_ctest_config_args} --output-on-failure --no-tests=error)
endfunction()

# armor_expect_system_include(<build dir> <include dir>): armor's headers must
# reach the consumer as -isystem, so that armor never adds warnings to a
# consumer's build. Checked where compile_commands.json exists (Ninja and
# Makefile generators) and the compiler spells it -isystem (GCC, Clang).
function(armor_expect_system_include build_dir include_dir)
  set(_db "${build_dir}/compile_commands.json")
  if(NOT EXISTS "${_db}" OR NOT ARMOR_CXX_COMPILER_ID MATCHES "^(GNU|Clang|AppleClang)$")
    message(STATUS "step: SYSTEM include check skipped (no compile_commands.json or not GCC/Clang)")
    return()
  endif()
  file(READ "${_db}" _commands)
  string(FIND "${_commands}" "-isystem ${include_dir}" _system)
  string(FIND "${_commands}" "-I${include_dir}" _plain)
  if(_system EQUAL -1 OR NOT _plain EQUAL -1)
    message(FATAL_ERROR
      "\n==== packaging test FAILED: armor's headers (${include_dir}) are not "
      "passed to the consumer as -isystem only.\n---- ${_db} ----\n${_commands}")
  endif()
  message(STATUS "step: armor's headers reach the consumer as -isystem ${include_dir}")
endfunction()
