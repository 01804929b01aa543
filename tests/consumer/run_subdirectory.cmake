# Packaging test: build and run tests/consumer/subdirectory, which vendors
# armor with add_subdirectory(<armor source> armor-build).
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")

file(REMOVE_RECURSE "${WORK_DIR}")
set(_build "${WORK_DIR}/build")
armor_build_and_run_consumer("${_build}" "-DARMOR_SOURCE_DIR=${ARMOR_SOURCE_DIR}")
armor_expect_system_include("${_build}" "${ARMOR_SOURCE_DIR}/include")
message(STATUS "add_subdirectory consumer: OK")
