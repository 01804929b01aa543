# Finds standalone Asio and adds what a target needs to use it with armor.
#
# Used twice: by armor's own CMakeLists.txt, and by the installed
# armorConfig.cmake on the consumer's machine, so an installed armor::asio
# uses the consumer's Asio instead of the path armor happened to be built
# against.
#
#   armor_find_asio()
#     Looks for asio.hpp (hint: the ARMOR_ASIO_INCLUDE_DIR cache variable).
#     Sets ARMOR_ASIO_FOUND, ARMOR_ASIO_INCLUDE_DIR and ARMOR_ASIO_VERSION
#     (from ASIO_VERSION in asio/version.hpp, e.g. 1.22.1).
#
#   armor_asio_usage(<target> [BUILD_INTERFACE])
#     Adds Asio's include directory (SYSTEM) and, for Clang with Asio older
#     than 1.26, ASIO_HAS_CO_AWAIT=1 and ASIO_HAS_STD_COROUTINE=1: Asio detects
#     clang's C++20 coroutines only from 1.26 on, so without them Debian's 1.22
#     has no asio::awaitable under clang. Whether the compiler is Clang is
#     decided per consuming target. BUILD_INTERFACE wraps everything in
#     $<BUILD_INTERFACE:...>, for a target that is also exported.

function(armor_find_asio)
  find_path(ARMOR_ASIO_INCLUDE_DIR NAMES asio.hpp
            DOC "Directory holding standalone Asio's asio.hpp")
  mark_as_advanced(ARMOR_ASIO_INCLUDE_DIR)
  set(ARMOR_ASIO_FOUND FALSE PARENT_SCOPE)
  set(ARMOR_ASIO_VERSION "" PARENT_SCOPE)
  if(NOT ARMOR_ASIO_INCLUDE_DIR OR NOT EXISTS "${ARMOR_ASIO_INCLUDE_DIR}/asio/version.hpp")
    return()
  endif()
  file(STRINGS "${ARMOR_ASIO_INCLUDE_DIR}/asio/version.hpp" _line
       REGEX "^#[ \t]*define[ \t]+ASIO_VERSION[ \t]+[0-9]+")
  if(NOT _line MATCHES "ASIO_VERSION[ \t]+([0-9]+)")
    return()
  endif()
  # ASIO_VERSION is major * 100000 + minor * 100 + patch.
  set(_n "${CMAKE_MATCH_1}")
  math(EXPR _major "${_n} / 100000")
  math(EXPR _minor "${_n} / 100 % 1000")
  math(EXPR _patch "${_n} % 100")
  set(ARMOR_ASIO_VERSION "${_major}.${_minor}.${_patch}" PARENT_SCOPE)
  set(ARMOR_ASIO_FOUND TRUE PARENT_SCOPE)
endfunction()

function(armor_asio_usage target)
  cmake_parse_arguments(PARSE_ARGV 1 _arg "BUILD_INTERFACE" "" "")
  set(_includes "${ARMOR_ASIO_INCLUDE_DIR}")
  set(_defines "")
  if(ARMOR_ASIO_VERSION VERSION_LESS 1.26)
    foreach(_d IN ITEMS ASIO_HAS_CO_AWAIT=1 ASIO_HAS_STD_COROUTINE=1)
      list(APPEND _defines "$<$<CXX_COMPILER_ID:Clang,AppleClang>:${_d}>")
    endforeach()
  endif()
  if(_arg_BUILD_INTERFACE)
    list(TRANSFORM _includes REPLACE "^(.+)$" "$<BUILD_INTERFACE:\\1>")
    list(TRANSFORM _defines REPLACE "^(.+)$" "$<BUILD_INTERFACE:\\1>")
  endif()
  target_include_directories(${target} SYSTEM INTERFACE ${_includes})
  if(_defines)
    target_compile_definitions(${target} INTERFACE ${_defines})
  endif()
endfunction()
