// armor/prometheus_cpp.hpp: armor's policies served by prometheus-cpp's
// Exposer, next to the service's own metrics (link armor::prometheus_cpp).
//
//     armor::prometheus::registry metrics;            // armor/prometheus.hpp
//     metrics.add(s3_breaker, {{"upstream", "s3-products"}});
//     auto armor_metrics = std::make_shared<armor::prometheus::collectable>(metrics);
//     exposer.RegisterCollectable(armor_metrics);      // beside the service's prometheus::Registry
//
// The collectable keeps a copy of the registry (its names, prefix, renames
// and labels) and, on every Collect(), renders the registry's exposition
// with registry::write() and hands it to prometheus-cpp as MetricFamily
// values: the families, names, labels, help texts and numbers are the ones
// armor's own writer produces, by construction. Collect() may run on any
// number of threads at once; it allocates (a scrape is not a hot path).
// The policies must outlive the collectable. docs/observability.md.
#pragma once

#include <armor/prometheus.hpp>

#include <prometheus/client_metric.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace armor::prometheus {

namespace detail {

/// One line of armor's exposition, "name{a="x",b="y"} value", taken apart.
struct parsed_sample {
  std::string_view name;
  std::vector<::prometheus::ClientMetric::Label> labels;
  std::string le;  // a histogram bucket's bound, not kept as a label
  double value = 0;
};

[[nodiscard]] inline double parse_value(std::string_view v) {
  if (v == "+Inf") return std::numeric_limits<double>::infinity();
  if (v == "-Inf") return -std::numeric_limits<double>::infinity();
  if (v == "NaN") return std::numeric_limits<double>::quiet_NaN();
  const std::string s(v);
  return std::strtod(s.c_str(), nullptr);  // armor writes the shortest text that reads back exactly
}

/// Takes apart one sample line written by sample_writer (labels escaped
/// with \\, \" and \n).
[[nodiscard]] inline parsed_sample parse_sample(std::string_view line) {
  parsed_sample s;
  std::size_t i = 0;
  while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
  s.name = line.substr(0, i);
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      const std::size_t eq = line.find('=', i);
      std::string name(line.substr(i, eq - i));
      std::string value;
      std::size_t j = eq + 2;  // past ="
      while (j < line.size() && line[j] != '"') {
        if (line[j] == '\\' && j + 1 < line.size()) {
          ++j;
          value.push_back(line[j] == 'n' ? '\n' : line[j]);
        } else {
          value.push_back(line[j]);
        }
        ++j;
      }
      i = j + 1;  // past the closing quote
      if (i < line.size() && line[i] == ',') ++i;
      if (name == "le") {
        s.le = std::move(value);
      } else {
        s.labels.push_back({std::move(name), std::move(value)});
      }
    }
    ++i;  // past }
  }
  while (i < line.size() && line[i] == ' ') ++i;
  s.value = parse_value(line.substr(i));
  return s;
}

[[nodiscard]] inline ::prometheus::MetricType metric_type_of(std::string_view type) noexcept {
  if (type == "counter") return ::prometheus::MetricType::Counter;
  if (type == "gauge") return ::prometheus::MetricType::Gauge;
  if (type == "histogram") return ::prometheus::MetricType::Histogram;
  return ::prometheus::MetricType::Untyped;
}

/// armor's exposition (registry::write) as prometheus-cpp's families.
[[nodiscard]] inline std::vector<::prometheus::MetricFamily> to_metric_families(std::string_view text) {
  std::vector<::prometheus::MetricFamily> out;
  bool histogram_open = false;  // the family's last ClientMetric still takes buckets
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (line.empty()) continue;
    constexpr std::string_view help = "# HELP ";
    constexpr std::string_view type = "# TYPE ";
    if (line.substr(0, help.size()) == help) {
      const std::string_view rest = line.substr(help.size());
      const std::size_t sp = rest.find(' ');
      ::prometheus::MetricFamily f;
      f.name = std::string(rest.substr(0, sp));
      if (sp != std::string_view::npos) f.help = std::string(rest.substr(sp + 1));
      out.push_back(std::move(f));
      histogram_open = false;
      continue;
    }
    if (line.substr(0, type.size()) == type) {
      const std::string_view rest = line.substr(type.size());
      const std::size_t sp = rest.find(' ');
      if (!out.empty() && sp != std::string_view::npos) out.back().type = metric_type_of(rest.substr(sp + 1));
      continue;
    }
    if (line[0] == '#' || out.empty()) continue;
    ::prometheus::MetricFamily& f = out.back();
    parsed_sample s = parse_sample(line);
    if (f.type != ::prometheus::MetricType::Histogram) {
      ::prometheus::ClientMetric m;
      m.label = std::move(s.labels);
      if (f.type == ::prometheus::MetricType::Counter) {
        m.counter.value = s.value;
      } else if (f.type == ::prometheus::MetricType::Gauge) {
        m.gauge.value = s.value;
      } else {
        m.untyped.value = s.value;
      }
      f.metric.push_back(std::move(m));
      continue;
    }
    // A histogram series: its _buckets (the last le="+Inf"), _sum, _count.
    const std::string_view suffix = std::string_view(s.name).substr(std::min(s.name.size(), f.name.size()));
    if (suffix == "_bucket") {
      if (!histogram_open) {
        f.metric.emplace_back();
        f.metric.back().label = std::move(s.labels);
        histogram_open = true;
      }
      ::prometheus::ClientMetric::Bucket b;
      b.cumulative_count = static_cast<std::uint64_t>(s.value);
      b.upper_bound = parse_value(s.le);
      f.metric.back().histogram.bucket.push_back(b);
    } else if (suffix == "_sum" && !f.metric.empty()) {
      f.metric.back().histogram.sample_sum = s.value;
    } else if (suffix == "_count" && !f.metric.empty()) {
      f.metric.back().histogram.sample_count = static_cast<std::uint64_t>(s.value);
      histogram_open = false;  // the series is complete
    }
  }
  return out;
}

}  // namespace detail

/// armor's policies as a prometheus-cpp Collectable: register it on the
/// service's Exposer (RegisterCollectable) next to its prometheus::Registry.
/// Holds a copy of `metrics` (set up before; later add() calls on the
/// original are not seen); every policy added must outlive it.
class collectable final : public ::prometheus::Collectable {
 public:
  explicit collectable(registry metrics) : metrics_(std::move(metrics)) {}

  /// The families of the registry's exposition, in its order.
  [[nodiscard]] std::vector<::prometheus::MetricFamily> Collect() const override {
    fmt::memory_buffer text;
    metrics_.write(text);
    return detail::to_metric_families(std::string_view(text.data(), text.size()));
  }

 private:
  registry metrics_;
};

}  // namespace armor::prometheus
