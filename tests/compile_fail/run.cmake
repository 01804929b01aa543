# Runs one compile-fail case (see CMakeLists.txt in this directory):
#
#   cmake -DCOMPILER=<c++> -DFLAGS=<a|b|...> -DINCLUDES=<dir|dir|...>
#         [-DIMPLICIT_INCLUDES=<dir|...>] -DSOURCE=<case.cpp> -P run.cmake
#
# FLAGS are passed as they are; each directory of INCLUDES becomes -I<dir>,
# except the compiler's implicit ones (IMPLICIT_INCLUDES).
#
# 1. The control: SOURCE with ARMOR_COMPILE_FAIL_FIXED defined (the mistake
#    corrected) must compile, so the case cannot pass because its source is
#    broken for some other reason (a renamed type, a missing include).
# 2. SOURCE as it is must not compile, and the first error the compiler
#    reports must be the static_assert whose message holds every
#    `// expect: <text>` line of SOURCE: the message is what the user reads
#    first, not a wall of template errors that happens to contain it.
#
# Both compiles use -fsyntax-only (templates are instantiated, static_asserts
# fire, nothing is written), with the build's compiler, standard, include
# directories and definitions.

cmake_minimum_required(VERSION 3.21)

foreach(_var IN ITEMS COMPILER SOURCE)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "run.cmake: ${_var} is not set")
  endif()
endforeach()
string(REPLACE "|" ";" _flags "${FLAGS}")
list(FILTER _flags EXCLUDE REGEX "^$")
string(REPLACE "|" ";" _includes "${INCLUDES}")
string(REPLACE "|" ";" _implicit "${IMPLICIT_INCLUDES}")
foreach(_dir IN LISTS _includes)
  if(NOT _dir STREQUAL "" AND NOT _dir IN_LIST _implicit)
    list(APPEND _flags "-I${_dir}")
  endif()
endforeach()

file(STRINGS "${SOURCE}" _expect_lines REGEX "^// expect: ")
set(_expected "")
foreach(_line IN LISTS _expect_lines)
  string(REGEX REPLACE "^// expect: " "" _text "${_line}")
  string(STRIP "${_text}" _text)
  if(NOT _text STREQUAL "")
    list(APPEND _expected "${_text}")
  endif()
endforeach()
if(NOT _expected)
  message(FATAL_ERROR "${SOURCE}: no `// expect: <text of the static_assert message>` line")
endif()

function(_armor_compile out_rc out_text)
  execute_process(
    COMMAND "${COMPILER}" ${_flags} ${ARGN} -fsyntax-only -fdiagnostics-color=never "${SOURCE}"
    RESULT_VARIABLE _rc
    OUTPUT_VARIABLE _out
    ERROR_VARIABLE _out)
  set(${out_rc} "${_rc}" PARENT_SCOPE)
  set(${out_text} "${_out}" PARENT_SCOPE)
endfunction()

list(JOIN _flags " " _shown_flags)
set(_command "${COMPILER} ${_shown_flags} -fsyntax-only ${SOURCE}")

# 1. The control.
_armor_compile(_rc _out -DARMOR_COMPILE_FAIL_FIXED)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR
    "The control (the mistake fixed, -DARMOR_COMPILE_FAIL_FIXED) does not compile, so this case proves nothing:\n"
    "  ${_command} -DARMOR_COMPILE_FAIL_FIXED\n${_out}")
endif()

# 2. The mistake.
_armor_compile(_rc _out)
if(_rc EQUAL 0)
  message(FATAL_ERROR "Compiled, but must fail with a static_assert saying:\n  ${_expected}\n  ${_command}\n${_out}")
endif()

# The first error line. g++: "error: static assertion failed: <message>";
# clang 16+: "error: static assertion failed due to requirement '...': <message>";
# clang 15 and older: "error: static_assert failed due to requirement '...' "<message>"".
# (No list(): compiler output holds unbalanced brackets, which CMake lists
# do not split at.)
string(REGEX MATCH "[^\n]*error:[^\n]*" _first_error "${_out}")

set(_problems "")
if(NOT _first_error MATCHES "static(_| )assert")
  list(APPEND _problems "the first error is not a static_assert")
endif()
foreach(_text IN LISTS _expected)
  string(FIND "${_first_error}" "${_text}" _at)
  if(_at EQUAL -1)
    list(APPEND _problems "the first error does not say: ${_text}")
  endif()
endforeach()
if(_problems)
  list(JOIN _problems "\n  " _problems)
  message(FATAL_ERROR
    "Failed to compile, as it must, but:\n  ${_problems}\n"
    "First error:\n  ${_first_error}\n"
    "Command:\n  ${_command}\n"
    "Output:\n${_out}")
endif()
message(STATUS "ok: the control compiles; the case fails with: ${_first_error}")
