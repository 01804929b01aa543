// promtool.hpp: runs the real `promtool check metrics` on an exposition.
// When promtool is not on PATH the test process exits with 77, which CTest
// reports as skipped (armor_fmt_promtool; Debian: apt-get install prometheus).
#pragma once

#include "armor_catch.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>

#include <unistd.h>

namespace armor_test {

inline std::filesystem::path temp_file(const char* name) {
  return std::filesystem::temp_directory_path() / (std::string(name) + "." + std::to_string(::getpid()));
}

inline std::optional<std::filesystem::path> find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return std::nullopt;
  std::string_view rest = path;
  while (!rest.empty()) {
    const std::size_t colon = rest.find(':');
    const std::string dir(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
    if (dir.empty()) continue;
    std::error_code ec;
    const std::filesystem::path candidate = std::filesystem::path(dir) / program;
    if (std::filesystem::is_regular_file(candidate, ec)) return candidate;
  }
  return std::nullopt;
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Checks `text` with `promtool check metrics`: it must pass with no lint
/// warning. Exits the process with 77 when promtool is not installed.
inline void promtool_check(const std::string& text) {
  const std::optional<std::filesystem::path> promtool = find_on_path("promtool");
  if (!promtool) {
    std::fprintf(stderr, "promtool is not on PATH: skipped (Debian: apt-get install prometheus)\n");
    std::exit(77);
  }
  const std::filesystem::path in = temp_file("armor_exposition");
  const std::filesystem::path out = temp_file("armor_promtool_out");
  {
    std::ofstream f(in);
    f << text;
  }
  const std::string command =
      "\"" + promtool->string() + "\" check metrics < \"" + in.string() + "\" > \"" + out.string() + "\" 2>&1";
  const int status = std::system(command.c_str());
  const std::string said = read_file(out);
  std::filesystem::remove(in);
  std::filesystem::remove(out);
  INFO("promtool said: " << said);
  INFO(text);
  CHECK(status == 0);
  CHECK(said.empty());  // no lint warning either
}

}  // namespace armor_test
