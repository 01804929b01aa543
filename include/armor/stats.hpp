// armor/stats.hpp: how a stats snapshot describes its own fields, so that
// printing it (armor/fmt.hpp) and exporting it (armor/prometheus.hpp) need
// no code of their own per policy: armor::stat_field, and armor::gauge,
// armor::counter and armor::field, which make one.
//
// A `<policy>_stats` struct lists its fields in a static member function
// `fields()`: the member, the name fmt prints, the Prometheus family it feeds.
//
//     struct my_policy_stats {
//         std::int64_t in_use = 0;
//         std::uint64_t rejected = 0;
//         static constexpr auto fields() noexcept {
//             return std::tuple{
//                 armor::gauge("in_use", &my_policy_stats::in_use,
//                              "armor_my_policy_in_use", "Calls inside now."),
//                 armor::counter("rejected", &my_policy_stats::rejected,
//                                "armor_my_policy_rejected_total", "Calls refused."),
//             };
//         }
//     };
//
// Adding a field to the struct and to its fields() is all it takes for fmt
// and Prometheus to show it. The value types a field may have:
// docs/observability.md#describing-a-stats-type.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>

namespace armor {

/// The Prometheus type of a metric family; `none` fields are printed by fmt
/// but not exported.
enum class metric_type : std::uint8_t {
  none,     ///< printed, not exported
  counter,  ///< only goes up (a `_total` family)
  gauge,    ///< a level, up and down
  histogram,  ///< a distribution: `_bucket`, `_sum`, `_count` (a histogram_snapshot field)
};

/// The name of a metric_type as Prometheus writes it ("counter", "gauge";
/// "none" for fields that are not exported).
[[nodiscard]] constexpr std::string_view to_string(metric_type t) noexcept {
  switch (t) {
    case metric_type::none: return "none";
    case metric_type::counter: return "counter";
    case metric_type::gauge: return "gauge";
    case metric_type::histogram: return "histogram";
  }
  return "unknown";
}

/// One field of a stats snapshot `S`: its member, its name as fmt prints
/// it, and (unless `type` is none) the metric family it feeds. Build it with
/// armor::gauge, armor::counter or armor::field.
template <class S, class T>
struct stat_field {
  std::string_view name;          ///< as printed: `name=value`
  T S::*member;                   ///< the value
  metric_type type = metric_type::none;
  std::string_view metric{};      ///< Prometheus family name (`armor_..._total` for counters)
  std::string_view help{};        ///< Prometheus HELP text
  std::string_view label_name{};  ///< optional label of this sample within its family
  std::string_view label_value{};
  bool counted = false;           ///< exported only while the snapshot's `counting` is true
  bool S::*present = nullptr;     ///< when set: exported only while this member of the snapshot is true

  /// The same field as one sample of a family split by a label
  /// (`armor_circuit_breaker_calls_total{outcome="failure"}`).
  [[nodiscard]] constexpr stat_field labelled(std::string_view name_of_label, std::string_view value) const noexcept {
    stat_field f = *this;
    f.label_name = name_of_label;
    f.label_value = value;
    return f;
  }
  /// The same field, exported only when the snapshot says it counts calls
  /// (the policy's `count_calls` option; see the stats struct).
  [[nodiscard]] constexpr stat_field when_counting() const noexcept {
    stat_field f = *this;
    f.counted = true;
    return f;
  }
  /// The same field, exported only while the snapshot's member `flag` is
  /// true (a value that exists only in some configurations: a backoff's
  /// retry budget level, `.when(&backoff_stats::has_budget)`).
  [[nodiscard]] constexpr stat_field when(bool S::*flag) const noexcept {
    stat_field f = *this;
    f.present = flag;
    return f;
  }
};

/// A field exported as a gauge.
template <class S, class T>
[[nodiscard]] constexpr stat_field<S, T> gauge(std::string_view name, T S::*member, std::string_view metric,
                                               std::string_view help) noexcept {
  return {name, member, metric_type::gauge, metric, help};
}

/// A field exported as a counter.
template <class S, class T>
[[nodiscard]] constexpr stat_field<S, T> counter(std::string_view name, T S::*member, std::string_view metric,
                                                 std::string_view help) noexcept {
  return {name, member, metric_type::counter, metric, help};
}

/// A field exported as a histogram (its value an armor::histogram_snapshot,
/// armor/histogram.hpp): fmt prints its count, sum and quantiles.
template <class S, class T>
[[nodiscard]] constexpr stat_field<S, T> histogram_field(std::string_view name, T S::*member, std::string_view metric,
                                                         std::string_view help) noexcept {
  return {name, member, metric_type::histogram, metric, help};
}

/// A field that is printed but not exported.
template <class S, class T>
[[nodiscard]] constexpr stat_field<S, T> field(std::string_view name, T S::*member) noexcept {
  return {name, member};
}

/// A stats snapshot that describes its fields (see the top of this header).
template <class S>
concept described_stats = requires { S::fields(); };

namespace detail {

template <class T>
inline constexpr bool is_optional_v = false;
template <class T>
inline constexpr bool is_optional_v<std::optional<T>> = true;

/// Whether a field's value is there: a std::optional or a string_view may
/// be empty.
template <class T>
[[nodiscard]] constexpr bool holds_value(const T& v) noexcept {
  if constexpr (is_optional_v<T>) {
    return v.has_value();
  } else if constexpr (std::is_same_v<T, std::string_view>) {
    return !v.empty();  // a name that was not given (a breaker's key outside keyed)
  } else {
    return true;
  }
}

template <class T>
inline constexpr bool is_duration_v = false;
template <class Rep, class Period>
inline constexpr bool is_duration_v<std::chrono::duration<Rep, Period>> = true;

/// A field's value as a metric sample: durations in seconds, enums as their
/// underlying integer, bool as 0 or 1.
template <class T>
[[nodiscard]] constexpr double metric_value(const T& v) noexcept {
  if constexpr (is_optional_v<T>) {
    return metric_value(*v);
  } else if constexpr (is_duration_v<T>) {
    return std::chrono::duration<double>(v).count();
  } else if constexpr (std::is_enum_v<T>) {
    return static_cast<double>(static_cast<std::underlying_type_t<T>>(v));
  } else if constexpr (requires { metric_value_of(v); }) {
    return metric_value_of(v);  // found by ADL: a type of armor's own (armor::rate)
  } else {
    return static_cast<double>(v);
  }
}

/// Whether a snapshot counts calls (its `counting` member; true without one).
template <class S>
[[nodiscard]] constexpr bool counting(const S& s) noexcept {
  if constexpr (requires { s.counting; }) {
    return static_cast<bool>(s.counting);
  } else {
    return true;
  }
}

/// Whether field `f` of snapshot `s` holds a value now: its when_counting()
/// and when() conditions (if any) hold. fmt prints only these.
template <class S, class T>
[[nodiscard]] constexpr bool present(const stat_field<S, T>& f, const S& s) noexcept {
  return (!f.counted || counting(s)) && (f.present == nullptr || s.*(f.present)) && holds_value(s.*(f.member));
}

/// Whether field `f` of snapshot `s` is exported now: it has a metric type,
/// and its when_counting() and when() conditions (if any) hold.
template <class S, class T>
[[nodiscard]] constexpr bool exported(const stat_field<S, T>& f, const S& s) noexcept {
  return f.type != metric_type::none && present(f, s);
}

/// Calls `f(field)` for each field of `S`, in order.
template <described_stats S, class F>
constexpr void for_each_field(F&& f) {
  std::apply([&](const auto&... each) { (f(each), ...); }, S::fields());
}

}  // namespace detail
}  // namespace armor
