// shape_checks.hpp: the checks of the one policy shape that every public
// enumeration and every stats type must pass (tests/fmt/test_shape.cpp and
// its Redis and SQLite twins list them; tests/shape/check_shape.py makes
// sure nothing is left out of those lists).
#pragma once

#include <armor/fmt.hpp>
#include <armor/prometheus.hpp>
#include <armor/stats.hpp>

#include "armor_catch.hpp"

#include <fmt/format.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

namespace armor_test {

inline bool is_identifier(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  for (const char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

/// Every value of `E` that has a name: the name is an identifier, unique,
/// and what fmt prints (with a string's format spec too); a value with no
/// enumerator is "unknown".
template <class E>
void check_enum(std::string_view type) {
  INFO("enum " << type);
  std::set<std::string_view> names;
  for (int v = 0; v < 256; ++v) {
    const E e = static_cast<E>(v);
    const std::string_view name = to_string(e);
    if (name == "unknown") continue;
    CHECK(is_identifier(name));
    CHECK(names.insert(name).second);
    CHECK(fmt::format("{}", e) == name);
    CHECK(fmt::format("{:>40}", e) == std::string(40 - name.size(), ' ') + std::string(name));
  }
  CHECK(!names.empty());
}

/// A policy whose stats() is a given snapshot.
template <class S>
struct stats_stub {
  S snapshot{};
  [[nodiscard]] S stats() const { return snapshot; }
};

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A stats type: fmt prints every field it holds by name; every field it
/// exports feeds a family named armor_..., counters ending in _total, with
/// help text, written once with HELP and TYPE; and docs/observability.md
/// lists each family.
template <class S>
void check_stats(std::string_view type, const S& sample = S{}) {
  INFO("stats " << type);
  static_assert(armor::described_stats<S>);
  const std::string printed = fmt::format("{}", sample);
  armor::detail::for_each_field<S>([&](const auto& f) {
    if (!armor::detail::present(f, sample)) return;
    CHECK(printed.find(std::string(f.name) + "=") != std::string::npos);
  });
  stats_stub<S> stub{sample};
  armor::prometheus::registry metrics;
  metrics.add(stub, {{"policy", "sample"}});
  const std::string text = metrics.text();
  const std::string docs = read_text(std::string(ARMOR_SOURCE_DIR) + "/docs/observability.md");
  REQUIRE(!docs.empty());
  armor::detail::for_each_field<S>([&](const auto& f) {
    if (f.type == armor::metric_type::none) return;
    const std::string name(f.metric);
    INFO("family " << name);
    CHECK(name.rfind("armor_", 0) == 0);
    CHECK(is_identifier(name));
    CHECK(!f.help.empty());
    const bool total = name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0;
    CHECK(total == (f.type == armor::metric_type::counter));
    const std::string help = "# HELP " + name + " ";
    const std::size_t at = text.find(help);
    CHECK(at != std::string::npos);
    CHECK(text.find(help, at + 1) == std::string::npos);
    CHECK(text.find("# TYPE " + name + " " + std::string(to_string(f.type)) + "\n") != std::string::npos);
    if (armor::detail::exported(f, sample)) {
      std::string series = name + "{policy=\"sample\"";
      if (!f.label_name.empty()) series += "," + std::string(f.label_name) + "=\"" + std::string(f.label_value) + "\"";
      if (f.type == armor::metric_type::histogram) {
        CHECK(text.find(name + "_count{policy=\"sample\"} ") != std::string::npos);
      } else {
        CHECK(text.find(series + "} ") != std::string::npos);
      }
    }
    CHECK(docs.find(name) != std::string::npos);
  });
}

}  // namespace armor_test
