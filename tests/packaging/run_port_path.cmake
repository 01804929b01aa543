# Packaging test: what armor's vcpkg port (ports/armor/portfile.cmake) does,
# done without vcpkg, then test_package/ built and run against the result.
#
#   1. configure armor's source with the port's options (ports/armor/options.cmake,
#      the file the portfile includes) and its build type, the selected
#      features turned into switches as vcpkg_check_features does;
#   2. build the install target into a staging prefix (vcpkg_cmake_install);
#   3. check the staged tree is what the rest of the portfile expects
#      (vcpkg_cmake_config_fixup's CONFIG_PATH, a header-only layout, no
#      absolute paths back into the build);
#   4. move it elsewhere, as vcpkg copies packages/<port> into installed/;
#   5. build test_package/ against it with find_package(armor CONFIG) and run it.
#
# Not reproduced: vcpkg's own toolchain, vcpkg_cmake_config_fixup's rewriting
# (a no-op here: the files are already where it wants them) and vcpkg's
# post-build checks. A real `vcpkg install` is still the final word.
#
# Inputs (-D), besides those tests/consumer/common.cmake requires:
#   PORT_FEATURES   the vcpkg features to select, comma-separated ("" = none,
#                   which is what `vcpkg install armor` selects)
#   HINT_<var>      a dependency location armor's own build found, passed on
#                   as -D<var>= so both configures find the same one:
#                   HINT_ARMOR_ASIO_INCLUDE_DIR, HINT_fmt_DIR,
#                   HINT_SQLite3_INCLUDE_DIR, HINT_SQLite3_LIBRARY,
#                   HINT_ARMOR_HIREDIS_INCLUDE_DIR, HINT_ARMOR_HIREDIS_LIBRARY,
#                   HINT_prometheus-cpp_DIR
cmake_minimum_required(VERSION 3.21)  # policies for this script (IN_LIST, ...)
include("${CMAKE_CURRENT_LIST_DIR}/../consumer/common.cmake")

set(_port_dir "${ARMOR_SOURCE_DIR}/ports/armor")
set(_portfile "${_port_dir}/portfile.cmake")
file(READ "${_portfile}" _portfile_text)

# The port's options, from the file the portfile itself includes.
include("${_port_dir}/options.cmake")
if(NOT ARMOR_PORT_OPTIONS OR NOT ARMOR_PORT_FEATURES)
  message(FATAL_ERROR "port path test: ${_port_dir}/options.cmake must set ARMOR_PORT_OPTIONS and ARMOR_PORT_FEATURES")
endif()

# The build type the portfile asks for (header-only: release only).
if(NOT _portfile_text MATCHES "set\\(VCPKG_BUILD_TYPE[ \t]+release\\)")
  message(FATAL_ERROR "port path test: ${_portfile} no longer sets VCPKG_BUILD_TYPE to release; update this test with it")
endif()
set(_build_type Release)

# Where vcpkg_cmake_config_fixup expects the package configuration.
if(_portfile_text MATCHES "vcpkg_cmake_config_fixup\\(([^)]*)\\)")
  set(_fixup_args "${CMAKE_MATCH_1}")
  if(_fixup_args MATCHES "CONFIG_PATH[ \t\r\n]+([^ \t\r\n)]+)")
    set(_config_path "${CMAKE_MATCH_1}")
  else()
    set(_config_path "share/armor")
  endif()
else()
  message(FATAL_ERROR "port path test: ${_portfile} does not call vcpkg_cmake_config_fixup()")
endif()

# vcpkg_check_features: a selected feature's switch is ON, every other one OFF.
string(REPLACE "," ";" _selected "${PORT_FEATURES}")
set(_feature_names "")
set(_feature_options "")
set(_pairs ${ARMOR_PORT_FEATURES})
list(LENGTH _pairs _n)
math(EXPR _last "${_n} - 1")
foreach(_i RANGE 0 ${_last} 2)
  math(EXPR _j "${_i} + 1")
  list(GET _pairs ${_i} _feature)
  list(GET _pairs ${_j} _switch)
  list(APPEND _feature_names "${_feature}")
  if(_feature IN_LIST _selected)
    list(APPEND _feature_options "-D${_switch}=ON")
  else()
    list(APPEND _feature_options "-D${_switch}=OFF")
  endif()
endforeach()
foreach(_feature IN LISTS _selected)
  if(NOT _feature IN_LIST _feature_names)
    message(FATAL_ERROR "port path test: '${_feature}' is not a feature of the port (${_feature_names})")
  endif()
endforeach()

set(_hints "")
foreach(_var IN ITEMS ARMOR_ASIO_INCLUDE_DIR fmt_DIR SQLite3_INCLUDE_DIR SQLite3_LIBRARY
                       ARMOR_HIREDIS_INCLUDE_DIR ARMOR_HIREDIS_LIBRARY prometheus-cpp_DIR)
  if(HINT_${_var})
    list(APPEND _hints "-D${_var}=${HINT_${_var}}")
  endif()
endforeach()

set(_tool_args -G "${ARMOR_GENERATOR}" "-DCMAKE_CXX_COMPILER=${ARMOR_CXX_COMPILER}")
if(ARMOR_MAKE_PROGRAM)
  list(APPEND _tool_args "-DCMAKE_MAKE_PROGRAM=${ARMOR_MAKE_PROGRAM}")
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
set(_buildtree "${WORK_DIR}/buildtrees/armor")
set(_staging "${WORK_DIR}/packages/armor")
set(_installed "${WORK_DIR}/installed")

if(_selected)
  list(JOIN _selected "," _shown)
  message(STATUS "port path: armor[${_shown}]")
else()
  message(STATUS "port path: armor (no features)")
endif()
list(JOIN ARMOR_PORT_OPTIONS " " _shown)
list(JOIN _feature_options " " _shown_features)
message(STATUS "port options: ${_shown} ${_shown_features}")

armor_step("configure armor as the port does"
  "${CMAKE_COMMAND}" -S "${ARMOR_SOURCE_DIR}" -B "${_buildtree}" ${_tool_args}
  "-DCMAKE_BUILD_TYPE=${_build_type}"
  "-DCMAKE_INSTALL_PREFIX=${_staging}"
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
  -DCMAKE_EXPORT_NO_PACKAGE_REGISTRY=ON
  ${ARMOR_PORT_OPTIONS}
  ${_feature_options}
  ${_hints})
armor_step("build the install target into ${_staging}"
  "${CMAKE_COMMAND}" --build "${_buildtree}" --config "${_build_type}" --target install)

# The port's switches turned armor's own parts off.
foreach(_part IN ITEMS tests examples benchmarks)
  if(EXISTS "${_buildtree}/${_part}")
    message(FATAL_ERROR "port path test FAILED: configured with the port's options, armor still added its ${_part}")
  endif()
endforeach()

# What the rest of the portfile relies on.
foreach(_required IN ITEMS include/armor/armor.hpp include/armor/version.hpp
                           "${_config_path}/armorConfig.cmake"
                           "${_config_path}/armorConfigVersion.cmake"
                           "${_config_path}/armorTargets.cmake")
  if(NOT EXISTS "${_staging}/${_required}")
    message(FATAL_ERROR "port path test FAILED: the staged tree lacks ${_required} "
                        "(vcpkg_cmake_config_fixup(CONFIG_PATH ${_config_path}) would fail)")
  endif()
endforeach()
foreach(_dir IN ITEMS lib bin)
  if(EXISTS "${_staging}/${_dir}")
    message(FATAL_ERROR "port path test FAILED: a header-only port installed ${_dir}/")
  endif()
endforeach()
if(NOT EXISTS "${ARMOR_SOURCE_DIR}/LICENSE" OR NOT EXISTS "${_port_dir}/usage")
  message(FATAL_ERROR "port path test FAILED: the portfile installs LICENSE and ports/armor/usage; one is missing")
endif()
file(GLOB_RECURSE _cmake_files "${_staging}/*.cmake")
foreach(_file IN LISTS _cmake_files)
  file(READ "${_file}" _text)
  foreach(_path IN ITEMS "${ARMOR_SOURCE_DIR}" "${WORK_DIR}")
    string(FIND "${_text}" "${_path}" _at)
    if(NOT _at EQUAL -1)
      message(FATAL_ERROR "port path test FAILED: ${_file} refers to ${_path}:\n${_text}")
    endif()
  endforeach()
endforeach()

# vcpkg builds into packages/<port>_<triplet> and then copies the tree into
# installed/<triplet>: the package must work from where it is copied to.
file(RENAME "${_staging}" "${_installed}")

set(_tp_build "${WORK_DIR}/test_package")
# The components are a list; an initial cache file carries it without the
# semicolons being taken apart on the way.
set(_tp_cache "${WORK_DIR}/test_package-cache.cmake")
# A feature's component is its name with underscores (prometheus-cpp: prometheus_cpp).
string(REPLACE "-" "_" _components "${_selected}")
file(WRITE "${_tp_cache}" "set(ARMOR_TEST_COMPONENTS \"${_components}\" CACHE STRING \"\")\n")
armor_step("configure test_package against ${_installed}"
  "${CMAKE_COMMAND}" -S "${ARMOR_SOURCE_DIR}/test_package" -B "${_tp_build}" ${_tool_args}
  -C "${_tp_cache}"
  "-DCMAKE_BUILD_TYPE=${_build_type}"
  "-DCMAKE_PREFIX_PATH=${_installed}"
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
  ${_hints})
armor_step("build test_package"
  "${CMAKE_COMMAND}" --build "${_tp_build}" --config "${_build_type}")

# find_package must have found this tree, not another armor.
load_cache("${_tp_build}" READ_WITH_PREFIX _tp_ armor_DIR)
file(REAL_PATH "${_installed}/${_config_path}" _expected_dir)
file(REAL_PATH "${_tp_armor_DIR}" _found_dir)
if(NOT _found_dir STREQUAL _expected_dir)
  message(FATAL_ERROR "port path test FAILED: test_package found armor in ${_tp_armor_DIR}, "
                      "not in ${_installed}/${_config_path}")
endif()

set(_exe_suffix "")
if(CMAKE_HOST_WIN32)
  set(_exe_suffix ".exe")
endif()
set(_exe "")
foreach(_candidate IN ITEMS "${_tp_build}/test_package${_exe_suffix}"
                            "${_tp_build}/${_build_type}/test_package${_exe_suffix}")
  if(EXISTS "${_candidate}")
    set(_exe "${_candidate}")
    break()
  endif()
endforeach()
if(NOT _exe)
  message(FATAL_ERROR "port path test FAILED: test_package was built but its executable is not in ${_tp_build}")
endif()
armor_step("run test_package" "${_exe}")
message(STATUS "port path: OK (armor_DIR=${_tp_armor_DIR})")
