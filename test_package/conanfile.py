"""Conan's test package for armor: builds test_package.cpp against the
package `conan create` just made and runs it. armor's CTest suite builds the
same CMake project against the tree the vcpkg port installs."""

import os

from conan import ConanFile
from conan.tools.build import can_run
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout


class ArmorTestPackageConan(ConanFile):
    settings = "os", "arch", "compiler", "build_type"

    def requirements(self):
        self.requires(self.tested_reference_str)

    def layout(self):
        cmake_layout(self)

    def generate(self):
        toolchain = CMakeToolchain(self)
        armor = self.dependencies["armor"]
        # The components this armor package has, from its options; the CMake
        # project checks that exactly these exist.
        components = [name for name in ("asio", "fmt", "sqlite", "redis", "prometheus_cpp")
                      if armor.options.get_safe(f"with_{name}")]
        # armor::prometheus_cpp brings armor::fmt with it.
        if "prometheus_cpp" in components and "fmt" not in components:
            components.insert(1, "fmt")
        toolchain.cache_variables["ARMOR_TEST_COMPONENTS"] = ";".join(components)
        toolchain.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def test(self):
        if can_run(self):
            self.run(os.path.join(self.cpp.build.bindir, "test_package"), env="conanrun")
