// Fuzzes armor::http::header_map: raw header lines, status lines included.
// Properties: the status is 0 or a three-digit number from the last status
// line; every field added is found by its name in any case (the first one
// wins) with its value trimmed; lines that are not fields add nothing.
#include "fuzz_common.hpp"

#include <armor/http/headers.hpp>

#include <cctype>
#include <string>
#include <vector>

namespace {
std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace http = armor::http;
  armor_fuzz::input in(data, size);
  http::header_map h;
  std::vector<std::pair<std::string, std::string>> expected;  // fields since the last status line
  while (!in.empty()) {
    const std::string_view raw = in.line();
    const std::size_t before = h.size();
    h.add_line(raw);
    std::string_view line = raw;
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
    if (line.substr(0, 5) == "HTTP/") {
      expected.clear();
      ARMOR_FUZZ_CHECK(h.size() == 0);
      ARMOR_FUZZ_CHECK(h.status() >= 0 && h.status() <= 999);
      continue;
    }
    if (h.size() == before) continue;  // not a field
    ARMOR_FUZZ_CHECK(h.size() == before + 1);
    const std::size_t colon = line.find(':');
    ARMOR_FUZZ_CHECK(colon != std::string_view::npos && colon > 0);
    expected.emplace_back(std::string(line.substr(0, colon)),
                          std::string(armor::detail::http_trim(line.substr(colon + 1))));
  }
  ARMOR_FUZZ_CHECK(h.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& [name, value] = expected[i];
    // The first field with this name (any case) is the one found.
    std::size_t first = i;
    for (std::size_t j = 0; j < i; ++j) {
      if (armor::detail::http_iequals(expected[j].first, name)) {
        first = j;
        break;
      }
    }
    const auto found = h.find(upper(name));
    ARMOR_FUZZ_CHECK(found.has_value());
    ARMOR_FUZZ_CHECK(*found == expected[first].second);
    const std::string_view v = *found;
    ARMOR_FUZZ_CHECK(v.empty() || (!armor::detail::http_ows(v.front()) && !armor::detail::http_ows(v.back())));
  }
  h.clear();
  ARMOR_FUZZ_CHECK(h.size() == 0 && h.status() == 0);
  return 0;
}
