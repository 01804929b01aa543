# Packaging test: install this armor build into a fresh prefix, then build and
# run tests/consumer/installed against it with find_package(armor CONFIG).
# Installing needs no build: the install rules cover only headers and CMake
# package files.
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")

set(_prefix "${WORK_DIR}/prefix")
file(REMOVE_RECURSE "${WORK_DIR}")

set(_install "${CMAKE_COMMAND}" --install "${ARMOR_BINARY_DIR}" --prefix "${_prefix}")
if(ARMOR_CONFIG)
  list(APPEND _install --config "${ARMOR_CONFIG}")
endif()
armor_step("install armor into ${_prefix}" ${_install})

# The installed package must be complete and must not point back into the
# source or build tree it came from.
file(GLOB _package_files "${_prefix}/share/cmake/armor/*.cmake")
foreach(_required IN ITEMS include/armor/armor.hpp include/armor/version.hpp
                           share/cmake/armor/armorConfig.cmake
                           share/cmake/armor/armorConfigVersion.cmake
                           share/cmake/armor/armorTargets.cmake)
  if(NOT EXISTS "${_prefix}/${_required}")
    message(FATAL_ERROR "packaging test FAILED: the installation lacks ${_required}")
  endif()
endforeach()
foreach(_file IN LISTS _package_files)
  file(READ "${_file}" _text)
  foreach(_tree IN ITEMS "${ARMOR_SOURCE_DIR}" "${ARMOR_BINARY_DIR}")
    string(FIND "${_text}" "${_tree}" _at)
    if(NOT _at EQUAL -1)
      message(FATAL_ERROR "packaging test FAILED: ${_file} refers to ${_tree}:\n${_text}")
    endif()
  endforeach()
endforeach()

set(_build "${WORK_DIR}/build")
armor_build_and_run_consumer("${_build}"
  "-DCMAKE_PREFIX_PATH=${_prefix}"
  "-DARMOR_EXPECTED_VERSION=${ARMOR_VERSION}"
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)

# find_package must have found this installation, not another one.
load_cache("${_build}" READ_WITH_PREFIX _consumer_ armor_DIR)
file(REAL_PATH "${_prefix}" _real_prefix)
file(REAL_PATH "${_consumer_armor_DIR}" _real_armor_dir)
string(FIND "${_real_armor_dir}/" "${_real_prefix}/" _at)
if(NOT _at EQUAL 0)
  message(FATAL_ERROR "packaging test FAILED: the consumer found armor in "
                      "${_consumer_armor_DIR}, not in ${_prefix}")
endif()
armor_expect_system_include("${_build}" "${_prefix}/include")
message(STATUS "installed consumer: OK (armor_DIR=${_consumer_armor_DIR})")
