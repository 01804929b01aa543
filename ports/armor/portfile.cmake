# vcpkg port for armor, a header-only C++20 library.
#
# This is an overlay port that lives in armor's own repository and builds
# the checkout it sits in:
#
#     vcpkg install armor --overlay-ports=<armor checkout>/ports
#
# vcpkg keys its binary cache on the port's files, not on this checkout's
# sources: after changing or pulling the sources, reinstall with
# --no-binarycaching (or bump "port-version" in vcpkg.json).
#
# For a registry, replace the SOURCE_PATH line with a download of a release:
#     vcpkg_from_github(OUT_SOURCE_PATH SOURCE_PATH REPO <owner>/armor
#                       REF "v${VERSION}" SHA512 <hash of the archive>)
#
# armor's own packaging test (tests/packaging/run_port_path.cmake) performs
# the configure and install below without vcpkg, with the same options
# (options.cmake), and builds test_package/ against the result.

# Header-only: one (release) configuration is enough; there is nothing to
# build in debug.
set(VCPKG_BUILD_TYPE release)

get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

include("${CMAKE_CURRENT_LIST_DIR}/options.cmake")

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
  FEATURES ${ARMOR_PORT_FEATURES})

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    ${ARMOR_PORT_OPTIONS}
    ${FEATURE_OPTIONS})

vcpkg_cmake_install()

# armor installs its package configuration to share/armor already
# (ARMOR_INSTALL_CMAKEDIR in options.cmake); this only checks and tidies it.
vcpkg_cmake_config_fixup(CONFIG_PATH share/armor)

vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
