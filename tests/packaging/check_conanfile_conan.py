#!/usr/bin/env python3
"""Runs armor's Conan recipe's methods under the real Conan 2.

Imports conanfile.py with the installed Conan (so its imports, the ConanFile
base class, check_min_cppstd and load are Conan's own) and calls its methods
on a minimal stand-in for what Conan's graph would provide: settings, options,
a cpp_info that records what package_info() declares, a requires() that
records the references. It checks set_version, requirements, validate,
package_id, the CMake switches generate() applies, and package_info.

Not covered here: generate(), build() and package() themselves, which need
Conan's toolchain, a dependency graph and a CMake run; `conan create .`
(which also builds and runs test_package/) covers them.

When Conan 2 cannot be imported, prints why and exits with 77, which CTest
reports as skipped: this test never pretends Conan is there.

    check_conanfile_conan.py <armor source dir>
"""

import importlib.util
import re
import sys
from pathlib import Path

SKIP = 77


def skip(reason):
    print(f"SKIPPED: {reason}")
    print(f"  (Python used: {sys.executable}; install Conan 2 into it with `pip install 'conan>=2'`, "
          "or point CMake's Python3_EXECUTABLE at a Python that has it)")
    return SKIP


class Settings:
    """settings.get_safe("compiler.cppstd") and settings.os, as recipes use them."""

    def __init__(self, values):
        self._values = dict(values)

    def get_safe(self, name, default=None):
        return self._values.get(name, default)

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None


class Info:
    def __init__(self, settings):
        self.settings = settings
        self.cleared = False

    def clear(self):
        self.cleared = True


class Component:
    def __init__(self):
        self.properties = {}
        self.includedirs = ["include"]
        self.libdirs = ["lib"]
        self.bindirs = ["bin"]
        self.requires = []
        self.defines = []
        self.system_libs = []

    def set_property(self, name, value):
        self.properties[name] = value

    def get_property(self, name):
        return self.properties.get(name)


class Components(dict):
    def __missing__(self, name):
        self[name] = Component()
        return self[name]


class CppInfo(Component):
    def __init__(self):
        super().__init__()
        self.components = Components()


def stand_in(recipe_class, source_dir, version=None, os_name="Linux", cppstd="20", **options):
    """An object with the recipe's own methods and attributes, and in place
    of Conan's graph the attributes those methods read."""
    own = {key: value for key, value in vars(recipe_class).items()
           if not (key.startswith("__") and key.endswith("__"))}
    instance = type("StandIn", (), own)()
    settings = Settings({"os": os_name, "arch": "x86_64", "compiler": "gcc", "compiler.version": "12",
                         "compiler.cppstd": cppstd, "build_type": "Release"})
    instance.settings = settings
    instance.info = Info(settings)
    instance.options = type("Options", (), {})()
    for name in ("with_asio", "with_fmt", "with_sqlite", "with_redis", "with_prometheus_cpp"):
        setattr(instance.options, name, options.get(name, False))
    instance.recipe_folder = str(source_dir)
    instance.version = version
    instance.cpp_info = CppInfo()
    instance.required = []
    instance.requires = lambda ref, **traits: instance.required.append(ref)
    return instance


def header_version(source_dir):
    text = (source_dir / "include" / "armor" / "version.hpp").read_text(encoding="utf-8")
    parts = [re.search(rf"^#\s*define\s+ARMOR_VERSION_{part}\s+(\d+)", text, re.MULTILINE).group(1)
             for part in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts)


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    source_dir = Path(argv[1]).resolve()

    try:
        import conan
    except ImportError as error:
        return skip(f"Conan is not importable ({error}); conanfile.py's methods were not run")
    version = getattr(conan, "__version__", None)
    if version is None:
        try:
            from conan import conan_version
            version = str(conan_version)
        except ImportError:
            version = "?"
    if not str(version).split(".")[0].isdigit() or int(str(version).split(".")[0]) < 2:
        return skip(f"Conan {version} is installed; armor's recipe is for Conan 2")

    from conan import ConanFile
    from conan.errors import ConanException, ConanInvalidConfiguration

    spec = importlib.util.spec_from_file_location("armor_conanfile", source_dir / "conanfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    recipes = [value for value in vars(module).values()
               if isinstance(value, type) and issubclass(value, ConanFile) and value is not ConanFile]
    failures = []

    def expect(condition, message):
        if not condition:
            failures.append(message)

    if len(recipes) != 1:
        print(f"FAILED: conanfile.py should define one ConanFile class, found {len(recipes)}")
        return 1
    recipe = recipes[0]
    print(f"Conan {version}: running {recipe.__name__}'s methods on a stand-in")

    defaults = dict(getattr(recipe, "default_options", {}))
    expect(sorted(defaults) == ["with_asio", "with_fmt", "with_prometheus_cpp", "with_redis", "with_sqlite"]
           and all(value is False for value in defaults.values()),
           f"default_options must turn every integration off, not {defaults}")

    # set_version: the header's version; a different --version is refused.
    expected = header_version(source_dir)
    r = stand_in(recipe, source_dir)
    r.set_version()
    expect(str(r.version) == expected, f"set_version() gave {r.version}, version.hpp says {expected}")
    r = stand_in(recipe, source_dir, version=expected)
    r.set_version()
    expect(str(r.version) == expected, "set_version() rejected the header's own version")
    r = stand_in(recipe, source_dir, version="999.0.0")
    try:
        r.set_version()
        failures.append("set_version() accepted a version that is not version.hpp's")
    except ConanException:
        pass

    # requirements: nothing by default, one package per option.
    for options, wanted in (({}, []),
                            ({"with_asio": True}, ["asio"]),
                            ({"with_fmt": True}, ["fmt"]),
                            ({"with_sqlite": True}, ["sqlite3"]),
                            ({"with_redis": True}, ["hiredis"]),
                            ({"with_prometheus_cpp": True}, ["fmt", "prometheus-cpp"]),  # it needs armor::fmt
                            ({"with_asio": True, "with_fmt": True, "with_sqlite": True, "with_redis": True},
                             ["asio", "fmt", "hiredis", "sqlite3"])):
        r = stand_in(recipe, source_dir, **options)
        r.requirements()
        got = sorted(ref.split("/")[0] for ref in r.required)
        expect(got == wanted, f"requirements() with {options or 'defaults'} required {got}, not {wanted}")

    # validate: C++20 or newer, GNU dialects included; older is refused.
    for cppstd, valid in (("17", False), ("gnu17", False), ("20", True), ("gnu20", True), ("23", True)):
        r = stand_in(recipe, source_dir, cppstd=cppstd)
        try:
            r.validate()
            expect(valid, f"validate() accepted compiler.cppstd={cppstd}")
        except ConanInvalidConfiguration as error:
            expect(not valid, f"validate() refused compiler.cppstd={cppstd}: {error}")

    # package_id: one package for every configuration.
    r = stand_in(recipe, source_dir)
    r.package_id()
    expect(r.info.cleared, "package_id() did not clear self.info")

    # The CMake switches generate() applies.
    for flag in (False, True):
        r = stand_in(recipe, source_dir, with_asio=flag, with_fmt=flag, with_sqlite=flag, with_redis=flag,
                     with_prometheus_cpp=flag)
        switches = r._cmake_switches()
        for name in ("ARMOR_WITH_ASIO", "ARMOR_WITH_FMT", "ARMOR_WITH_SQLITE", "ARMOR_WITH_REDIS",
                     "ARMOR_WITH_PROMETHEUS_CPP"):
            expect(switches.get(name) is flag, f"{name} is {switches.get(name)!r} with the options {flag}")
        for name, value in (("ARMOR_BUILD_TESTS", False), ("ARMOR_BUILD_EXAMPLES", False),
                            ("ARMOR_BUILD_BENCHMARKS", False), ("ARMOR_INSTALL", True)):
            expect(switches.get(name) is value, f"{name} is {switches.get(name)!r}, not {value}")

    # package_info: armor::armor alone by default; each option adds its component.
    for options, wanted in (({}, {"armor"}),
                            ({"with_asio": True}, {"armor", "asio"}),
                            ({"with_prometheus_cpp": True}, {"armor", "fmt", "prometheus_cpp"}),
                            ({"with_asio": True, "with_fmt": True, "with_sqlite": True, "with_redis": True},
                             {"armor", "asio", "fmt", "sqlite", "redis"})):
        r = stand_in(recipe, source_dir, **options)
        r.package_info()
        info = r.cpp_info
        expect(set(info.components) == wanted,
               f"package_info() with {options or 'defaults'} declared {sorted(info.components)}, "
               f"not {sorted(wanted)}")
        expect(info.get_property("cmake_file_name") == "armor", "cmake_file_name is not armor")
        expect(info.get_property("cmake_target_name") != "armor::armor",
               "the package-wide target is armor::armor, which would make armor::armor link every component")
        for name, component in info.components.items():
            expect(component.get_property("cmake_target_name") == f"armor::{name}",
                   f"component {name}'s target is {component.get_property('cmake_target_name')}")
            expect(component.libdirs == [] and component.bindirs == [],
                   f"component {name} declares library or binary directories in a header-only package")
        expect("pthread" in info.components["armor"].system_libs, "armor::armor does not link pthread on Linux")
        for name, dependency in (("asio", "asio::asio"), ("fmt", "fmt::fmt"), ("sqlite", "sqlite3::sqlite3"),
                                 ("redis", "hiredis::hiredis"),
                                 ("prometheus_cpp", "prometheus-cpp::prometheus-cpp-core")):
            if name in info.components:
                requires = info.components[name].requires
                expect("armor" in requires and dependency in requires,
                       f"armor::{name} requires {requires}, not armor and {dependency}")

    if failures:
        for failure in failures:
            print(f"  FAILED: {failure}")
        return 1
    print("  set_version, requirements, validate, package_id, CMake switches and package_info: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
