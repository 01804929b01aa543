"""Conan 2 recipe for armor, a header-only C++20 resilience library.

    conan create . -s compiler.cppstd=20 --build=missing
    conan create . -s compiler.cppstd=20 -o "armor/*:with_asio=True" --build=missing
    conan create . -s compiler.cppstd=20 -o "armor/*:with_prometheus_cpp=True" --build=missing

The version comes from include/armor/version.hpp (set_version), so it cannot
drift from the library's. `conan create` builds and runs test_package/, the
same consumer armor's CTest suite builds against the tree the vcpkg port
installs (tests/packaging/).
"""

import os
import re

from conan import ConanFile
from conan.errors import ConanException
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, load, rmdir

required_conan_version = ">=2.0"

# Passed to armor's CMake whatever the options: nothing of armor's own is
# built, only the install rules run. The vcpkg port passes the same switches
# (ports/armor/options.cmake); tests/packaging/check_conanfile_static.py
# checks that the two lists agree.
CMAKE_SWITCHES = {
    "ARMOR_BUILD_TESTS": False,
    "ARMOR_BUILD_EXAMPLES": False,
    "ARMOR_BUILD_BENCHMARKS": False,
    "ARMOR_INSTALL": True,
}


class ArmorConan(ConanFile):
    name = "armor"
    description = ("Header-only C++20 resilience library: circuit breaker, backoff, "
                   "rate limits, quotas, deadlines")
    license = "MIT"
    topics = ("resilience", "circuit-breaker", "retry", "backoff", "rate-limiting", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    # Each option adds one component (armor::asio, armor::fmt, armor::sqlite,
    # armor::redis, armor::prometheus_cpp)
    # and its dependency. All off by default: a default must not add API.
    # with_prometheus_cpp brings armor::fmt too (armor writes its exposition
    # with fmt), as the vcpkg feature prometheus-cpp selects fmt.
    options = {
        "with_asio": [True, False],
        "with_fmt": [True, False],
        "with_sqlite": [True, False],
        "with_redis": [True, False],
        "with_prometheus_cpp": [True, False],
    }
    default_options = {
        "with_asio": False,
        "with_fmt": False,
        "with_sqlite": False,
        "with_redis": False,
        "with_prometheus_cpp": False,
    }
    exports_sources = "CMakeLists.txt", "LICENSE", "cmake/*", "include/*"
    no_copy_source = True

    def set_version(self):
        header = load(self, os.path.join(self.recipe_folder, "include", "armor", "version.hpp"))
        parts = []
        for part in ("MAJOR", "MINOR", "PATCH"):
            match = re.search(rf"^[ \t]*#[ \t]*define[ \t]+ARMOR_VERSION_{part}[ \t]+([0-9]+)",
                              header, re.MULTILINE)
            if match is None:
                raise ConanException(f"armor: cannot read ARMOR_VERSION_{part} from "
                                     "include/armor/version.hpp")
            parts.append(match.group(1))
        version = ".".join(parts)
        if self.version is not None and str(self.version) != version:
            raise ConanException(f"armor: the version given ({self.version}) is not the one in "
                                 f"include/armor/version.hpp ({version})")
        self.version = version

    def layout(self):
        # build/conan, not build/: the CMake presets build in build/<preset>,
        # and build/Release would be build/release on a case-insensitive disk.
        cmake_layout(self, build_folder="build/conan")

    def requirements(self):
        # A header-library's requirements reach its consumers by themselves:
        # armor's integration headers include these libraries' headers.
        if self.options.with_asio:
            # From 1.26 Asio sees clang's C++20 coroutines by itself, so
            # armor::asio needs none of the definitions armor's CMake adds for
            # older Asio (cmake/armorAsio.cmake).
            self.requires("asio/[>=1.26 <2]")
        if self._with_fmt():
            self.requires("fmt/[>=9 <12]")
        if self.options.with_sqlite:
            self.requires("sqlite3/[>=3.35 <4]")
        if self.options.with_redis:
            self.requires("hiredis/[>=1.0 <2]")
        if self.options.with_prometheus_cpp:
            # armor::prometheus_cpp uses prometheus-cpp's core library only
            # (Collectable, MetricFamily); the service brings the Exposer.
            self.requires("prometheus-cpp/[>=1.0 <2]")

    def _with_fmt(self):
        """armor::fmt: asked for, or needed by armor::prometheus_cpp."""
        return bool(self.options.with_fmt) or bool(self.options.with_prometheus_cpp)

    def package_id(self):
        # Headers only, the same for every configuration and option.
        self.info.clear()

    def validate(self):
        check_min_cppstd(self, 20)

    def _cmake_switches(self):
        """Every cache variable armor's CMake is configured with."""
        switches = dict(CMAKE_SWITCHES)
        switches["ARMOR_WITH_ASIO"] = bool(self.options.with_asio)
        switches["ARMOR_WITH_FMT"] = bool(self.options.with_fmt) or bool(self.options.with_prometheus_cpp)
        switches["ARMOR_WITH_SQLITE"] = bool(self.options.with_sqlite)
        switches["ARMOR_WITH_REDIS"] = bool(self.options.with_redis)
        switches["ARMOR_WITH_PROMETHEUS_CPP"] = bool(self.options.with_prometheus_cpp)
        return switches

    def generate(self):
        toolchain = CMakeToolchain(self)
        for name, value in self._cmake_switches().items():
            toolchain.cache_variables[name] = value
        if self.options.with_asio:
            # armor looks for Asio in one way only, find_path(asio.hpp) with
            # ARMOR_ASIO_INCLUDE_DIR as its answer; give it Conan's Asio.
            include_dir = self.dependencies["asio"].cpp_info.includedirs[0]
            toolchain.cache_variables["ARMOR_ASIO_INCLUDE_DIR"] = include_dir.replace("\\", "/")
        toolchain.generate()
        # fmt, SQLite3, hiredis and prometheus-cpp are found with find_package, through these files.
        CMakeDeps(self).generate()

    def build(self):
        # Nothing to compile. Configuring checks the switches and finds the
        # dependencies the options enable, as the vcpkg port's build does.
        cmake = CMake(self)
        cmake.configure()

    def package(self):
        cmake = CMake(self)
        cmake.install()
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        # CMakeDeps writes consumers' package configuration from
        # package_info(), so armor's own (share/cmake/armor) goes, with the
        # licence's second copy (share/doc/armor).
        rmdir(self, os.path.join(self.package_folder, "share"))

    @staticmethod
    def _header_only(component, target):
        component.set_property("cmake_target_name", target)
        component.bindirs = []
        component.libdirs = []

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "armor")
        # CMakeDeps also makes one target for the whole package, linking every
        # component. Named armor::armor it would be the core component's own
        # target, and armor::armor would then pull in Asio, fmt and SQLite.
        self.cpp_info.set_property("cmake_target_name", "armor::all")

        core = self.cpp_info.components["armor"]
        self._header_only(core, "armor::armor")
        if self.settings.os in ("Linux", "FreeBSD"):
            core.system_libs = ["pthread"]

        # The integrations add no headers directory of their own (they are in
        # armor's), only their dependency and its definitions.
        if self.options.with_asio:
            asio = self.cpp_info.components["asio"]
            self._header_only(asio, "armor::asio")
            asio.includedirs = []
            asio.requires = ["armor", "asio::asio"]
            asio.defines = ["ASIO_STANDALONE", "ASIO_NO_DEPRECATED"]
        if self.options.with_fmt or self.options.with_prometheus_cpp:
            fmt = self.cpp_info.components["fmt"]
            self._header_only(fmt, "armor::fmt")
            fmt.includedirs = []
            fmt.requires = ["armor", "fmt::fmt"]
        if self.options.with_sqlite:
            sqlite = self.cpp_info.components["sqlite"]
            self._header_only(sqlite, "armor::sqlite")
            sqlite.includedirs = []
            sqlite.requires = ["armor", "sqlite3::sqlite3"]
        if self.options.with_redis:
            redis = self.cpp_info.components["redis"]
            self._header_only(redis, "armor::redis")
            redis.includedirs = []
            redis.requires = ["armor", "hiredis::hiredis"]
        if self.options.with_prometheus_cpp:
            prometheus_cpp = self.cpp_info.components["prometheus_cpp"]
            self._header_only(prometheus_cpp, "armor::prometheus_cpp")
            prometheus_cpp.includedirs = []
            # prometheus-cpp's Conan package names its core library's component so.
            prometheus_cpp.requires = ["armor", "fmt", "prometheus-cpp::prometheus-cpp-core"]
