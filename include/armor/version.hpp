// armor/version.hpp: the library version, in one place.
//
// CMake reads the three macros below to set the project version, so this
// header is the single source of truth for it.
//
//     static_assert(ARMOR_VERSION >= 100); // 0.1.0 or newer
//
// The packages carry the same version (README.md#installing).
#pragma once

#define ARMOR_VERSION_MAJOR 0
#define ARMOR_VERSION_MINOR 1
#define ARMOR_VERSION_PATCH 0

/// The version as one comparable number: major * 10000 + minor * 100 + patch.
#define ARMOR_VERSION (ARMOR_VERSION_MAJOR * 10000 + ARMOR_VERSION_MINOR * 100 + ARMOR_VERSION_PATCH)
