// armor_catch.hpp: Catch2 for armor's tests, whichever major version is installed.
//
// Debian ships Catch2 2.13 (<catch2/catch.hpp>); vcpkg and Conan ship v3
// (<catch2/catch_test_macros.hpp>). Both link as Catch2::Catch2WithMain. Tests
// include this header instead of Catch2's and keep to the macros both have:
// TEST_CASE, SECTION, CHECK, CHECK_FALSE, REQUIRE, REQUIRE_FALSE,
// CHECK_THROWS_AS, REQUIRE_THROWS_AS, CHECK_NOTHROW, REQUIRE_NOTHROW, INFO,
// CAPTURE, FAIL, SUCCEED.
#pragma once

// No try/catch around each CHECK/REQUIRE's expression: Catch2's own switch for
// faster builds of assertion-heavy files (about 13 % of a test file's g++ -O3
// compile, measured). An exception escaping an assertion's expression still
// fails the test case; it is reported at the test case rather than at that
// assertion. The *_THROWS and *_NOTHROW assertions are unaffected.
#ifndef CATCH_CONFIG_FAST_COMPILE
#define CATCH_CONFIG_FAST_COMPILE
#endif

#if __has_include(<catch2/catch_test_macros.hpp>)
#include <catch2/catch_test_macros.hpp>
#else
#include <catch2/catch.hpp>
#endif
