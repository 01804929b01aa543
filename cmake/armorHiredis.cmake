# Finds hiredis (the C client for Redis) and adds what a target needs to use
# it with armor/redis.hpp (armor/redis/*.hpp: the connection, the quota
# storage, the token bucket).
#
# Used twice: by armor's own CMakeLists.txt, and by the installed
# armorConfig.cmake on the consumer's machine, so an installed armor::redis
# uses the consumer's hiredis instead of the path armor was built against.
#
#   armor_find_hiredis()
#     Prefers a CMake package that provides the target hiredis::hiredis
#     (vcpkg's and Conan's hiredis do); otherwise looks for hiredis/hiredis.h
#     and the library with find_path/find_library (Debian's libhiredis-dev;
#     hints: the ARMOR_HIREDIS_INCLUDE_DIR and ARMOR_HIREDIS_LIBRARY cache
#     variables). Sets ARMOR_HIREDIS_FOUND and ARMOR_HIREDIS_VERSION (from
#     hiredis.h, e.g. 0.14.1).
#
#   armor_hiredis_usage(<target> [BUILD_INTERFACE])
#     Links hiredis to the INTERFACE of <target>. BUILD_INTERFACE wraps it in
#     $<BUILD_INTERFACE:...>, for a target that is also exported.

function(armor_find_hiredis)
  set(ARMOR_HIREDIS_FOUND FALSE PARENT_SCOPE)
  set(ARMOR_HIREDIS_VERSION "" PARENT_SCOPE)
  set(ARMOR_HIREDIS_TARGET "" PARENT_SCOPE)
  if(NOT ARMOR_HIREDIS_INCLUDE_DIR AND NOT ARMOR_HIREDIS_LIBRARY)
    find_package(hiredis CONFIG QUIET)
  endif()
  if(TARGET hiredis::hiredis)
    set(ARMOR_HIREDIS_TARGET hiredis::hiredis PARENT_SCOPE)
    set(ARMOR_HIREDIS_FOUND TRUE PARENT_SCOPE)
    set(ARMOR_HIREDIS_VERSION "${hiredis_VERSION}" PARENT_SCOPE)
    return()
  endif()
  find_path(ARMOR_HIREDIS_INCLUDE_DIR NAMES hiredis/hiredis.h DOC "Directory holding hiredis/hiredis.h")
  find_library(ARMOR_HIREDIS_LIBRARY NAMES hiredis DOC "The hiredis library")
  mark_as_advanced(ARMOR_HIREDIS_INCLUDE_DIR ARMOR_HIREDIS_LIBRARY)
  if(NOT ARMOR_HIREDIS_INCLUDE_DIR OR NOT ARMOR_HIREDIS_LIBRARY)
    return()
  endif()
  file(STRINGS "${ARMOR_HIREDIS_INCLUDE_DIR}/hiredis/hiredis.h" _lines
       REGEX "^#[ \t]*define[ \t]+HIREDIS_(MAJOR|MINOR|PATCH)[ \t]+[0-9]+")
  set(_version "")
  foreach(_part IN ITEMS MAJOR MINOR PATCH)
    foreach(_line IN LISTS _lines)
      if(_line MATCHES "HIREDIS_${_part}[ \t]+([0-9]+)")
        list(APPEND _version "${CMAKE_MATCH_1}")
      endif()
    endforeach()
  endforeach()
  list(JOIN _version "." _version)
  set(ARMOR_HIREDIS_VERSION "${_version}" PARENT_SCOPE)
  set(ARMOR_HIREDIS_FOUND TRUE PARENT_SCOPE)
endfunction()

function(armor_hiredis_usage target)
  cmake_parse_arguments(PARSE_ARGV 1 _arg "BUILD_INTERFACE" "" "")
  if(ARMOR_HIREDIS_TARGET)
    set(_links "${ARMOR_HIREDIS_TARGET}")
    set(_includes "")
  else()
    set(_links "${ARMOR_HIREDIS_LIBRARY}")
    set(_includes "${ARMOR_HIREDIS_INCLUDE_DIR}")
  endif()
  if(_arg_BUILD_INTERFACE)
    list(TRANSFORM _links REPLACE "^(.+)$" "$<BUILD_INTERFACE:\\1>")
    list(TRANSFORM _includes REPLACE "^(.+)$" "$<BUILD_INTERFACE:\\1>")
  endif()
  if(_includes)
    target_include_directories(${target} SYSTEM INTERFACE ${_includes})
  endif()
  target_link_libraries(${target} INTERFACE ${_links})
endfunction()
