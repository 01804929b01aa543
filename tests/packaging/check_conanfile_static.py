#!/usr/bin/env python3
"""Static validation of armor's Conan recipe, without Conan.

This parses conanfile.py and test_package/conanfile.py with Python's `ast`
module and checks what can be read from the source: it is valid Python, it
declares what issue #10 asks of it, and its CMake switches agree with the
vcpkg port's (ports/armor/options.cmake). Nothing here imports or runs the
recipe, so it says nothing about how Conan itself would treat it; that is
check_conanfile_conan.py's job, where Conan is installed.

    check_conanfile_static.py <armor source dir>

Exit status 0 when every check passes, 1 otherwise (each failure printed).
"""

import ast
import re
import sys
from pathlib import Path

FEATURES = ("asio", "fmt", "sqlite", "redis", "prometheus_cpp")
COMPONENTS = {"armor", *FEATURES}
METHODS = ("set_version", "layout", "requirements", "package_id", "validate", "generate",
           "build", "package", "package_info")


class Checker:
    def __init__(self):
        self.failures = []
        self.passed = 0

    def check(self, condition, message):
        if condition:
            self.passed += 1
        else:
            self.failures.append(message)
        return condition


def literal(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return None


def class_attributes(cls):
    attrs = {}
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    attrs[target.id] = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
            attrs[stmt.target.id] = stmt.value
    return attrs


def methods(cls):
    return {stmt.name: stmt for stmt in cls.body if isinstance(stmt, ast.FunctionDef)}


def recipe_class(tree):
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if (isinstance(base, ast.Name) and base.id == "ConanFile") or \
                        (isinstance(base, ast.Attribute) and base.attr == "ConanFile"):
                    return node
    return None


def calls(node, name):
    """Every call in node to a function or method called `name`."""
    found = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            if (isinstance(func, ast.Name) and func.id == name) or \
                    (isinstance(func, ast.Attribute) and func.attr == name):
                found.append(sub)
    return found


def component_names(node):
    """The string keys of every `<x>.components["name"]` subscript in node."""
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Attribute) \
                and sub.value.attr == "components":
            key = literal(sub.slice)
            if isinstance(key, str):
                names.add(key)
    return names


def port_options(source_dir):
    """The switches in ports/armor/options.cmake: {name: value} and the
    feature -> switch pairs, read from its two set() calls."""
    text = (source_dir / "ports" / "armor" / "options.cmake").read_text(encoding="utf-8")
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    options = {}
    block = re.search(r"set\(\s*ARMOR_PORT_OPTIONS\s+([^)]*)\)", code)
    if block:
        for name, value in re.findall(r"-D([A-Za-z0-9_]+)=(\S+)", block.group(1)):
            options[name] = value
    features = {}
    block = re.search(r"set\(\s*ARMOR_PORT_FEATURES\s+([^)]*)\)", code)
    if block:
        words = block.group(1).split()
        # vcpkg's feature names have hyphens where the recipe's options and
        # armor's components have underscores (prometheus-cpp).
        features = {feature.replace("-", "_"): switch for feature, switch in zip(words[0::2], words[1::2])}
    return options, features


def cmake_bool(value):
    return str(value).upper() in ("ON", "TRUE", "YES", "1", "Y")


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    source_dir = Path(argv[1])
    check = Checker()

    recipe_path = source_dir / "conanfile.py"
    try:
        tree = ast.parse(recipe_path.read_text(encoding="utf-8"), filename=str(recipe_path))
    except SyntaxError as error:
        print(f"FAILED: {recipe_path} is not valid Python: {error}")
        return 1

    module_names = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    module_names[target.id] = node.value
    imports = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and node.module and node.module.startswith("conan") for alias in node.names}
    check.check(not any(isinstance(node, ast.ImportFrom) and node.module == "conans"
                        for node in ast.walk(tree)),
                "conanfile.py imports from `conans` (Conan 1); use the `conan` package")
    required = literal(module_names.get("required_conan_version"))
    check.check(isinstance(required, str) and re.match(r"^>=\s*2", required or ""),
                f"required_conan_version must ask for Conan 2 (>=2...), not {required!r}")

    cls = recipe_class(tree)
    if not check.check(cls is not None, "conanfile.py defines no class deriving from ConanFile"):
        return report(check)
    attrs = class_attributes(cls)
    defs = methods(cls)

    check.check(literal(attrs.get("name")) == "armor", "name must be \"armor\"")
    check.check("version" not in attrs,
                "the recipe must not state a version: set_version() reads include/armor/version.hpp")
    check.check(literal(attrs.get("package_type")) == "header-library",
                f"package_type must be \"header-library\", not {literal(attrs.get('package_type'))!r}")
    settings = literal(attrs.get("settings"))
    settings = (settings,) if isinstance(settings, str) else tuple(settings or ())
    check.check({"os", "arch", "compiler", "build_type"} <= set(settings),
                f"settings must include os, arch, compiler and build_type, not {settings}")

    options = literal(attrs.get("options")) or {}
    defaults = literal(attrs.get("default_options")) or {}
    for feature in FEATURES:
        option = f"with_{feature}"
        check.check(sorted(options.get(option, []), key=str) == [False, True],
                    f"options must declare {option}: [True, False]")
        check.check(defaults.get(option) is False,
                    f"default_options must turn {option} off (a default must not add API)")
    check.check(set(options) == {f"with_{f}" for f in FEATURES},
                f"options are exactly {', '.join(f'with_{f}' for f in FEATURES)}, not {sorted(options)}")

    for name in METHODS:
        check.check(name in defs, f"the recipe has no {name}() method")

    if "set_version" in defs:
        text = ast.unparse(defs["set_version"])
        check.check("version.hpp" in text and "ARMOR_VERSION_" in text,
                    "set_version() must read ARMOR_VERSION_* from include/armor/version.hpp")
    if "validate" in defs:
        found = [c for c in calls(defs["validate"], "check_min_cppstd")
                 if len(c.args) >= 2 and str(literal(c.args[1])) == "20"]
        check.check(bool(found), "validate() must call check_min_cppstd(self, 20)")
        check.check("check_min_cppstd" in imports, "check_min_cppstd is not imported from conan.tools.build")
    if "package_id" in defs:
        clear = [c for c in calls(defs["package_id"], "clear")
                 if isinstance(c.func, ast.Attribute) and isinstance(c.func.value, ast.Attribute)
                 and c.func.value.attr == "info"]
        check.check(bool(clear), "package_id() must call self.info.clear()")
    if "requirements" in defs:
        refs = [literal(c.args[0]) for c in calls(defs["requirements"], "requires") if c.args]
        names = sorted(str(ref).split("/")[0] for ref in refs if isinstance(ref, str))
        check.check(names == ["asio", "fmt", "hiredis", "prometheus-cpp", "sqlite3"],
                    "requirements() must require asio, fmt, hiredis, prometheus-cpp and sqlite3 (one per option), "
                    f"not {names}")
    if "package_info" in defs:
        found = component_names(defs["package_info"])
        check.check(found == COMPONENTS,
                    f"package_info() must declare components {sorted(COMPONENTS)}, not {sorted(found)}")
        body = ast.unparse(defs["package_info"])
        for component in sorted(COMPONENTS):
            check.check(f"'armor::{component}'" in body or f'"armor::{component}"' in body,
                        f"package_info() never names the target armor::{component}")
        for feature in FEATURES:
            check.check(f"self.options.with_{feature}" in body,
                        f"package_info() must declare the {feature} component only with with_{feature}")

    # The switches: the recipe's fixed ones are the port's, and every port
    # feature's switch is the recipe's option's.
    switches = literal(module_names.get("CMAKE_SWITCHES"))
    port, port_features = port_options(source_dir)
    if check.check(isinstance(switches, dict) and switches,
                   "conanfile.py must define CMAKE_SWITCHES, a dict literal of the fixed CMake switches"):
        for name, value in switches.items():
            check.check(name in port and cmake_bool(port[name]) == bool(value),
                        f"CMAKE_SWITCHES[{name!r}] = {value!r}, but ports/armor/options.cmake has "
                        f"{name}={port.get(name, '<absent>')}")
        for name, value in port.items():
            if name.startswith("ARMOR_BUILD_") or name == "ARMOR_INSTALL":
                check.check(name in switches,
                            f"ports/armor/options.cmake passes {name}={value}; the recipe does not")
    check.check(sorted(port_features) == sorted(FEATURES),
                f"ports/armor/options.cmake maps features {sorted(port_features)}, "
                f"the recipe has options for {list(FEATURES)}")
    if "_cmake_switches" in defs:
        body = ast.unparse(defs["_cmake_switches"])
        for feature, switch in port_features.items():
            check.check(f"'{switch}'" in body or f'"{switch}"' in body,
                        f"the recipe never sets {switch} (vcpkg feature {feature})")
            check.check(f"self.options.with_{feature}" in body,
                        f"the recipe's {switch} does not follow with_{feature}")
    else:
        check.check(False, "the recipe has no _cmake_switches() method, which generate() applies")

    # test_package/conanfile.py: a Conan 2 test recipe for the same CMake project.
    test_path = source_dir / "test_package" / "conanfile.py"
    try:
        test_tree = ast.parse(test_path.read_text(encoding="utf-8"), filename=str(test_path))
    except (OSError, SyntaxError) as error:
        check.check(False, f"{test_path}: {error}")
    else:
        test_cls = recipe_class(test_tree)
        if check.check(test_cls is not None, "test_package/conanfile.py defines no ConanFile class"):
            test_defs = methods(test_cls)
            for name in ("requirements", "build", "test"):
                check.check(name in test_defs, f"test_package/conanfile.py has no {name}()")
            text = ast.unparse(test_cls)
            check.check("tested_reference_str" in text,
                        "test_package/conanfile.py must require self.tested_reference_str")
            check.check("ARMOR_TEST_COMPONENTS" in text,
                        "test_package/conanfile.py must pass ARMOR_TEST_COMPONENTS to the CMake project")
        check.check((source_dir / "test_package" / "CMakeLists.txt").is_file(),
                    "test_package/CMakeLists.txt is missing")

    return report(check)


def report(check):
    print("static validation of conanfile.py (parsed with ast; the recipe is not imported or run):")
    if check.failures:
        for failure in check.failures:
            print(f"  FAILED: {failure}")
        print(f"{len(check.failures)} failed, {check.passed} passed")
        return 1
    print(f"  {check.passed} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
