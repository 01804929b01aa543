// armor_catch.hpp: Catch2 for armor's tests, whichever major version is installed.
//
// Debian ships Catch2 2.13 (<catch2/catch.hpp>); vcpkg and Conan ship v3
// (<catch2/catch_test_macros.hpp>). Both link as Catch2::Catch2WithMain. Tests
// include this header instead of Catch2's and keep to the macros both have:
// TEST_CASE, SECTION, CHECK, CHECK_FALSE, REQUIRE, REQUIRE_FALSE,
// CHECK_THROWS_AS, REQUIRE_THROWS_AS, CHECK_NOTHROW, REQUIRE_NOTHROW, INFO,
// CAPTURE, FAIL, SUCCEED.
#pragma once

#if __has_include(<catch2/catch_test_macros.hpp>)
#include <catch2/catch_test_macros.hpp>
#else
#include <catch2/catch.hpp>
#endif
