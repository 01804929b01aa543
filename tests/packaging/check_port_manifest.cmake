# Packaging test: armor's vcpkg port agrees with the library and with itself.
# Reads files only; vcpkg is not needed.
#
#   - ports/armor/vcpkg.json: valid JSON, "version" equal to the version in
#     include/armor/version.hpp, no default features (a default feature must
#     not add API), exactly the features ports/armor/options.cmake maps to
#     switches, and the two helper ports the portfile calls;
#   - ports/armor/portfile.cmake takes its options and features from
#     options.cmake (so tests/packaging/run_port_path.cmake runs what vcpkg
#     runs) and performs every step a header-only port needs;
#   - ports/armor/usage names each target the features add;
#   - the top-level development vcpkg.json is valid JSON and, if it states a
#     version, states the header's.
#
# Input (-D): ARMOR_SOURCE_DIR.
cmake_minimum_required(VERSION 3.21)  # policies for this script (IN_LIST, ...)
if(NOT ARMOR_SOURCE_DIR)
  message(FATAL_ERROR "port manifest test: ARMOR_SOURCE_DIR must be given with -D")
endif()
set(_port_dir "${ARMOR_SOURCE_DIR}/ports/armor")
set(_failures "")
macro(_fail)
  string(CONCAT _msg ${ARGN})
  list(APPEND _failures "${_msg}")
endmacro()

# The version, read from the header as the top-level CMakeLists.txt reads it
# (not from the build's PROJECT_VERSION, which a stale configure could hold).
file(STRINGS "${ARMOR_SOURCE_DIR}/include/armor/version.hpp" _lines
     REGEX "^#[ \t]*define[ \t]+ARMOR_VERSION_(MAJOR|MINOR|PATCH)[ \t]+[0-9]+")
set(_version "")
foreach(_part IN ITEMS MAJOR MINOR PATCH)
  set(_value "")
  foreach(_line IN LISTS _lines)
    if(_line MATCHES "ARMOR_VERSION_${_part}[ \t]+([0-9]+)")
      set(_value "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  if(_value STREQUAL "")
    message(FATAL_ERROR "port manifest test: cannot read ARMOR_VERSION_${_part} from include/armor/version.hpp")
  endif()
  list(APPEND _version "${_value}")
endforeach()
list(JOIN _version "." _version)

# _json_get(<out> <json> <what> <key>...): the value, or "<missing>".
function(_json_get out json)
  string(JSON _value ERROR_VARIABLE _error GET "${json}" ${ARGN})
  if(_error)
    set(_value "<missing>")
  endif()
  set(${out} "${_value}" PARENT_SCOPE)
endfunction()

# ---- ports/armor/vcpkg.json
file(READ "${_port_dir}/vcpkg.json" _manifest)
string(JSON _type ERROR_VARIABLE _error TYPE "${_manifest}")
if(_error OR NOT _type STREQUAL "OBJECT")
  message(FATAL_ERROR "port manifest test: ports/armor/vcpkg.json is not a JSON object: ${_error}")
endif()
_json_get(_name "${_manifest}" name)
if(NOT _name STREQUAL "armor")
  _fail("ports/armor/vcpkg.json: \"name\" is '${_name}', not 'armor'")
endif()
_json_get(_port_version "${_manifest}" version)
if(NOT _port_version STREQUAL _version)
  _fail("ports/armor/vcpkg.json: \"version\" is '${_port_version}' but include/armor/version.hpp says ${_version}")
endif()
foreach(_other IN ITEMS version-string version-semver version-date)
  _json_get(_value "${_manifest}" ${_other})
  if(NOT _value STREQUAL "<missing>")
    _fail("ports/armor/vcpkg.json: use \"version\" only, not \"${_other}\"")
  endif()
endforeach()
_json_get(_defaults "${_manifest}" default-features)
if(NOT _defaults STREQUAL "<missing>")
  string(JSON _count LENGTH "${_defaults}")
  if(_count GREATER 0)
    _fail("ports/armor/vcpkg.json: \"default-features\" is ${_defaults}, but no feature may be on by default")
  endif()
endif()

set(_host_helpers "")
_json_get(_deps "${_manifest}" dependencies)
if(NOT _deps STREQUAL "<missing>")
  string(JSON _count LENGTH "${_deps}")
  if(_count GREATER 0)
    math(EXPR _last "${_count} - 1")
    foreach(_i RANGE ${_last})
      string(JSON _dep_type TYPE "${_deps}" ${_i})
      if(_dep_type STREQUAL "OBJECT")
        _json_get(_dep_name "${_deps}" ${_i} name)
        _json_get(_dep_host "${_deps}" ${_i} host)
        if(_dep_host STREQUAL "ON")
          list(APPEND _host_helpers "${_dep_name}")
        endif()
      endif()
    endforeach()
  endif()
endif()
foreach(_helper IN ITEMS vcpkg-cmake vcpkg-cmake-config)
  if(NOT _helper IN_LIST _host_helpers)
    _fail("ports/armor/vcpkg.json: the portfile calls ${_helper}'s functions, so it must depend on {\"name\": \"${_helper}\", \"host\": true}")
  endif()
endforeach()

# The features: the same names as options.cmake maps to switches.
include("${_port_dir}/options.cmake")
set(_option_features "")
set(_pairs ${ARMOR_PORT_FEATURES})
list(LENGTH _pairs _n)
math(EXPR _odd "${_n} % 2")
if(_n EQUAL 0 OR _odd)
  message(FATAL_ERROR "port manifest test: ARMOR_PORT_FEATURES in options.cmake must be <feature> <switch> pairs")
endif()
math(EXPR _last "${_n} - 1")
foreach(_i RANGE 0 ${_last} 2)
  math(EXPR _j "${_i} + 1")
  list(GET _pairs ${_i} _feature)
  list(GET _pairs ${_j} _switch)
  list(APPEND _option_features "${_feature}")
  # vcpkg's feature names have hyphens where armor's components and switches
  # have underscores (prometheus-cpp: armor::prometheus_cpp).
  string(REPLACE "-" "_" _upper "${_feature}")
  string(TOUPPER "${_upper}" _upper)
  if(NOT _switch STREQUAL "ARMOR_WITH_${_upper}")
    _fail("options.cmake: feature '${_feature}' maps to ${_switch}, not ARMOR_WITH_${_upper}")
  endif()
endforeach()
set(_manifest_features "")
_json_get(_features "${_manifest}" features)
if(NOT _features STREQUAL "<missing>")
  string(JSON _count LENGTH "${_features}")
  if(_count GREATER 0)
    math(EXPR _last "${_count} - 1")
    foreach(_i RANGE ${_last})
      string(JSON _feature MEMBER "${_features}" ${_i})
      list(APPEND _manifest_features "${_feature}")
      _json_get(_description "${_features}" ${_feature} description)
      _json_get(_feature_deps "${_features}" ${_feature} dependencies)
      if(_description STREQUAL "<missing>" OR _feature_deps STREQUAL "<missing>")
        _fail("ports/armor/vcpkg.json: feature '${_feature}' needs a description and its dependencies")
      endif()
    endforeach()
  endif()
endif()
list(SORT _manifest_features)
set(_sorted_option_features ${_option_features})
list(SORT _sorted_option_features)
if(NOT _manifest_features STREQUAL _sorted_option_features)
  list(JOIN _manifest_features ", " _shown_manifest)
  list(JOIN _sorted_option_features ", " _shown_options)
  _fail("ports/armor/vcpkg.json has the features [${_shown_manifest}] but options.cmake maps [${_shown_options}]")
endif()

# ---- ports/armor/portfile.cmake: its code, without comments.
file(STRINGS "${_port_dir}/portfile.cmake" _portfile_lines)
set(_code "")
foreach(_line IN LISTS _portfile_lines)
  string(REGEX REPLACE "#.*$" "" _line "${_line}")
  string(APPEND _code "${_line}\n")
endforeach()
foreach(_needed IN ITEMS
    "set\\(VCPKG_BUILD_TYPE release\\)"
    "include\\(\"\\\${CMAKE_CURRENT_LIST_DIR}/options\\.cmake\"\\)"
    "vcpkg_check_features\\([^)]*FEATURES[ \t\n]+\\\${ARMOR_PORT_FEATURES}[ \t\n]*\\)"
    "vcpkg_cmake_configure\\([^)]*\\\${ARMOR_PORT_OPTIONS}[^)]*\\\${FEATURE_OPTIONS}[^)]*\\)"
    "vcpkg_cmake_install\\(\\)"
    "vcpkg_cmake_config_fixup\\("
    "vcpkg_install_copyright\\([^)]*LICENSE"
    "/usage\"[ \t\n]+DESTINATION[ \t\n]+\"\\\${CURRENT_PACKAGES_DIR}/share/\\\${PORT}\"")
  if(NOT _code MATCHES "${_needed}")
    _fail("ports/armor/portfile.cmake: no code matching ${_needed}")
  endif()
endforeach()
if(_code MATCHES "-DARMOR_[A-Z_]+")
  _fail("ports/armor/portfile.cmake passes ${CMAKE_MATCH_0} itself: put the port's switches in options.cmake, "
        "which armor's packaging test runs with")
endif()

# ---- ports/armor/usage
file(READ "${_port_dir}/usage" _usage)
foreach(_needed IN ITEMS "find_package(armor CONFIG REQUIRED)" "armor::armor")
  string(FIND "${_usage}" "${_needed}" _at)
  if(_at EQUAL -1)
    _fail("ports/armor/usage does not show ${_needed}")
  endif()
endforeach()
foreach(_feature IN LISTS _option_features)
  string(REPLACE "-" "_" _component "${_feature}")
  string(FIND "${_usage}" "armor::${_component}" _at)
  if(_at EQUAL -1)
    _fail("ports/armor/usage does not name armor::${_component} (feature ${_feature})")
  endif()
endforeach()

# ---- vcpkg.json (the development manifest)
file(READ "${ARMOR_SOURCE_DIR}/vcpkg.json" _dev)
string(JSON _type ERROR_VARIABLE _error TYPE "${_dev}")
if(_error OR NOT _type STREQUAL "OBJECT")
  _fail("vcpkg.json (development manifest) is not a JSON object: ${_error}")
else()
  _json_get(_dev_version "${_dev}" version)
  if(NOT _dev_version STREQUAL "<missing>" AND NOT _dev_version STREQUAL _version)
    _fail("vcpkg.json: \"version\" is '${_dev_version}' but include/armor/version.hpp says ${_version}")
  endif()
endif()

if(_failures)
  list(JOIN _failures "\n  " _failures)
  message(FATAL_ERROR "port manifest test FAILED:\n  ${_failures}")
endif()
list(JOIN _option_features ", " _shown)
message(STATUS "port manifest: OK (armor ${_version}; features ${_shown}, none on by default)")
