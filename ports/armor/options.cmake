# What armor's vcpkg port passes to armor's CMake, kept in one place.
#
# portfile.cmake includes this file, and so does armor's own packaging test
# (tests/packaging/run_port_path.cmake), which configures, installs and
# consumes armor with exactly these switches on every CI run. Change the
# port's options here, never in the portfile, so the two cannot drift apart.

# Always passed. armor is header-only: nothing is compiled, and none of
# armor's own tests, examples or benchmarks are configured (they would look
# for Catch2 and Google Benchmark). The package configuration goes straight
# to share/armor, where vcpkg wants it, so vcpkg_cmake_config_fixup() has no
# files to move.
set(ARMOR_PORT_OPTIONS
  -DARMOR_BUILD_TESTS=OFF
  -DARMOR_BUILD_EXAMPLES=OFF
  -DARMOR_BUILD_BENCHMARKS=OFF
  -DARMOR_INSTALL=ON
  -DARMOR_INSTALL_CMAKEDIR=share/armor)

# vcpkg feature, then the armor switch it turns on, in the form
# vcpkg_check_features(FEATURES ...) takes. A feature that is not selected
# passes its switch as OFF, so no switch is ever left to armor's default.
# The feature names are those in vcpkg.json and the names of the components
# the feature adds (armor::asio, armor::fmt, armor::sqlite,
# armor::redis), with a hyphen where the component has an underscore
# (vcpkg's names have none): prometheus-cpp adds armor::prometheus_cpp.
set(ARMOR_PORT_FEATURES
  asio   ARMOR_WITH_ASIO
  fmt    ARMOR_WITH_FMT
  sqlite ARMOR_WITH_SQLITE
  redis  ARMOR_WITH_REDIS
  prometheus-cpp ARMOR_WITH_PROMETHEUS_CPP)
