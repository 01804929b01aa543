// armor/prometheus.hpp: the Prometheus text exposition format (version
// 0.0.4) for a set of named policies (needs fmt; link armor::fmt).
//
//     armor::prometheus::registry metrics;
//     metrics.add(s3_breaker, {{"upstream", "s3-products"}})
//            .add(gemini_quota, {{"api", "gemini"}})
//            .add(per_ip_limits, {{"route", "/search"}}, "client");   // keyed: one series per key
//
//     fmt::memory_buffer body;      // in the /metrics handler (text/plain; version=0.0.4)
//     metrics.write(body);
//
// Any policy whose stats() returns a snapshot that describes its fields
// (armor/stats.hpp) can be added; the families and their help texts come
// from those descriptions, so this header names no policy. The catalogue of
// families is in docs/observability.md.
//
// The registry holds references: every policy added must outlive every
// write(). add() is for setup (it allocates and must not race with
// write()); write() may run on any number of threads at once while the
// policies serve calls. It takes one snapshot per family and policy (relaxed
// loads; a keyed map's shard lock, shared, while it visits that shard) and
// allocates only to grow the output buffer.
#pragma once

#include <armor/error.hpp>
#include <armor/fmt.hpp>
#include <armor/keyed.hpp>
#include <armor/stats.hpp>

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace armor::prometheus {

/// One label of a policy's series: `{"upstream", "s3-products"}`.
struct label {
  std::string_view name;
  std::string_view value;
};

namespace detail {

/// A metric family: its name, type and help text.
struct family {
  std::string_view name;
  std::string_view type;  // "counter" or "gauge"
  std::string_view help;
};

/// Appends a label value escaped as the exposition format wants it.
inline void append_escaped(fmt::memory_buffer& out, std::string_view v) {
  for (const char c : v) {
    switch (c) {
      case '\\': out.append(std::string_view{"\\\\"}); break;
      case '"': out.append(std::string_view{"\\\""}); break;
      case '\n': out.append(std::string_view{"\\n"}); break;
      default: out.push_back(c);
    }
  }
}

inline void append(fmt::memory_buffer& out, std::string_view s) { out.append(s); }

/// Writes the samples of one family for one policy: the family's name, the
/// policy's (already escaped) labels, the key of a keyed policy, the window
/// of a windowed usage, and at most one label of the field's own.
class sample_writer {
 public:
  sample_writer(fmt::memory_buffer& out, std::string_view name, std::string_view labels) noexcept
      : out_(out), name_(name), labels_(labels) {}

  void key(std::string_view label_name, std::string_view key) noexcept {
    key_label_ = label_name;
    key_ = key;
  }
  void window(std::string_view w) noexcept { window_ = w; }

  void sample(std::string_view extra_name, std::string_view extra_value, double value) {
    append(out_, name_);
    bool first = true;
    const auto open = [&] {
      out_.push_back(first ? '{' : ',');
      first = false;
    };
    const auto pair = [&](std::string_view n, std::string_view v) {
      open();
      append(out_, n);
      append(out_, "=\"");
      append_escaped(out_, v);
      out_.push_back('"');
    };
    if (!labels_.empty()) {
      open();
      append(out_, labels_);
    }
    if (!key_label_.empty()) pair(key_label_, key_);
    if (!window_.empty()) pair("window", window_);
    if (!extra_name.empty()) pair(extra_name, extra_value);
    if (!first) out_.push_back('}');
    out_.push_back(' ');
    if (std::isnan(value)) {
      append(out_, "NaN");
    } else if (std::isinf(value)) {
      append(out_, value > 0 ? "+Inf" : "-Inf");
    } else {
      fmt::format_to(fmt::appender(out_), "{}", value);
    }
    out_.push_back('\n');
  }

 private:
  fmt::memory_buffer& out_;
  std::string_view name_;
  std::string_view labels_;
  std::string_view key_label_;
  std::string_view key_;
  std::string_view window_;
};

/// The families a described stats type feeds, in the order of its fields,
/// each once (fields that share a metric name are samples of one family).
template <described_stats S>
struct families_of {
  static constexpr std::size_t fields = std::tuple_size_v<decltype(S::fields())>;
  static constexpr auto table = [] {
    std::pair<std::array<family, fields>, std::size_t> t{};
    armor::detail::for_each_field<S>([&](const auto& f) {
      if (f.type == metric_type::none || f.metric.empty()) return;
      for (std::size_t i = 0; i < t.second; ++i) {
        if (t.first[i].name == f.metric) return;
      }
      t.first[t.second++] = family{f.metric, to_string(f.type), f.help};
    });
    return t;
  }();
  static constexpr std::span<const family> list{table.first.data(), table.second};
};

/// Writes the samples of family `name` from snapshot `s`.
template <described_stats S>
void write_family(const S& s, std::string_view name, sample_writer& w) {
  armor::detail::for_each_field<S>([&](const auto& f) {
    if (f.metric != name || !armor::detail::exported(f, s)) return;
    w.sample(f.label_name, f.label_value, armor::detail::metric_value(s.*(f.member)));
  });
}

/// A policy with a stats() snapshot that describes itself.
template <class P>
concept has_stats = requires(const P& p) {
  { p.stats() } -> described_stats;
};

/// A policy with several windows, each with a usage snapshot that describes
/// itself and a name (`window_name(i)`): the quota tracker. Its families
/// come before the stats' and carry the label window="<name>".
template <class P>
concept has_windows = requires(const P& p, std::size_t i) {
  { p.window_count() } -> std::convertible_to<std::size_t>;
  { p.usage(i) } -> described_stats;
  { p.window_name(i) } -> std::convertible_to<std::string_view>;
};

template <class P>
concept exportable = has_stats<P> || has_windows<P>;

template <class P>
struct exporter {
  static constexpr std::span<const family> stats_families = [] {
    if constexpr (has_stats<P>) {
      return families_of<decltype(std::declval<const P&>().stats())>::list;
    } else {
      return std::span<const family>{};
    }
  }();
  static constexpr std::span<const family> window_families = [] {
    if constexpr (has_windows<P>) {
      return families_of<decltype(std::declval<const P&>().usage(std::size_t{}))>::list;
    } else {
      return std::span<const family>{};
    }
  }();
  static constexpr std::size_t size = stats_families.size() + window_families.size();

  // The windows' families first, then the stats'.
  [[nodiscard]] static const family& at(std::size_t f) noexcept {
    return f < window_families.size() ? window_families[f] : stats_families[f - window_families.size()];
  }

  static void write(const P& p, std::size_t f, sample_writer& w) {
    if (f >= window_families.size()) {
      if constexpr (has_stats<P>) write_family(p.stats(), stats_families[f - window_families.size()].name, w);
      return;
    }
    if constexpr (has_windows<P>) {
      for (std::size_t i = 0; i < p.window_count(); ++i) {
        w.window(p.window_name(i));
        write_family(p.usage(i), window_families[f].name, w);
      }
      w.window({});
    }
  }
};

template <class P>
inline constexpr bool is_keyed = false;
template <class P, class Options, class Clock>
inline constexpr bool is_keyed<keyed<P, Options, Clock>> = true;

/// Names armor gives labels of its own, which a policy's labels must not use.
inline constexpr std::array<std::string_view, 3> reserved_labels{"outcome", "reason", "window"};

[[nodiscard]] constexpr bool valid_label_name(std::string_view n) noexcept {
  if (n.empty() || (n.size() >= 2 && n[0] == '_' && n[1] == '_')) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

}  // namespace detail

/// A set of policies to expose, each with its labels (see the top of this
/// header). Copyable (it copies the references and labels).
class registry {
 public:
  registry() = default;

  /// Adds a policy (any whose stats() describes its fields), with the labels
  /// that tell it apart. Throws armor::error(invalid_argument) for a label
  /// name that is not a valid Prometheus label name, starts with "__",
  /// repeats, or is one armor adds (outcome, reason, window). `p` must
  /// outlive every write().
  template <class P>
    requires(detail::exportable<P> && !detail::is_keyed<P>)
  registry& add(const P& p, std::initializer_list<label> labels = {}) {
    entries_.push_back(make_entry(p, labels, {}));
    return *this;
  }

  /// Adds a keyed map: one series per key, the key in the label
  /// `key_label` ("key" by default), next to `labels`.
  template <class P, class Options, class Clock>
    requires detail::exportable<typename keyed<P, Options, Clock>::instance_type>
  registry& add(const keyed<P, Options, Clock>& k, std::initializer_list<label> labels = {},
                std::string_view key_label = "key") {
    entries_.push_back(make_entry(k, labels, key_label));
    return *this;
  }

  /// Policies added.
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

  /// Appends the exposition of every policy added to `out`: each family
  /// once, with HELP and TYPE, then its samples from every policy that
  /// feeds it, in the order added.
  void write(fmt::memory_buffer& out) const {
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      if (seen_before(i)) continue;
      const entry& first = entries_[i];
      for (std::size_t f = 0; f < first.family_count; ++f) {
        const detail::family& fam = first.family_at(f);
        detail::append(out, "# HELP ");
        detail::append(out, fam.name);
        out.push_back(' ');
        detail::append(out, fam.help);
        detail::append(out, "\n# TYPE ");
        detail::append(out, fam.name);
        out.push_back(' ');
        detail::append(out, fam.type);
        out.push_back('\n');
        for (std::size_t j = i; j < entries_.size(); ++j) {
          const entry& e = entries_[j];
          if (!e.same_families(first)) continue;
          detail::sample_writer w(out, fam.name, e.labels);
          e.emit(e.policy, f, w, e.key_label);
        }
      }
    }
  }

  /// The exposition as a string.
  [[nodiscard]] std::string text() const {
    fmt::memory_buffer out;
    write(out);
    return fmt::to_string(out);
  }

 private:
  using emit_fn = void (*)(const void*, std::size_t, detail::sample_writer&, std::string_view);
  using family_fn = const detail::family& (*)(std::size_t) noexcept;

  struct entry {
    family_fn family_at = nullptr;
    std::size_t family_count = 0;
    // Entries with the same families (one stats type, keyed or not) are
    // written together: each family once.
    const void* group_stats = nullptr;
    const void* group_windows = nullptr;
    [[nodiscard]] bool same_families(const entry& o) const noexcept {
      return group_stats == o.group_stats && group_windows == o.group_windows;
    }
    const void* policy = nullptr;
    emit_fn emit = nullptr;
    std::string labels;     // rendered: name="escaped value",...
    std::string key_label;  // keyed maps only
  };

  template <class P>
  static void emit_one(const void* p, std::size_t f, detail::sample_writer& w, std::string_view) {
    detail::exporter<P>::write(*static_cast<const P*>(p), f, w);
  }

  template <class K>
  static void emit_keyed(const void* p, std::size_t f, detail::sample_writer& w, std::string_view key_label) {
    using instance = typename K::instance_type;
    static_cast<const K*>(p)->for_each([&](std::string_view key, const instance& i) {
      w.key(key_label, key);
      detail::exporter<instance>::write(i, f, w);
    });
  }

  template <class P>
  static void set_families(entry& e) noexcept {
    using x = detail::exporter<P>;
    e.family_at = &x::at;
    e.family_count = x::size;
    e.group_stats = x::stats_families.data();
    e.group_windows = x::window_families.data();
  }

  template <class P>
  static entry make_entry(const P& p, std::initializer_list<label> labels, std::string_view key_label) {
    entry e;
    e.policy = &p;
    if constexpr (detail::is_keyed<P>) {
      using instance = typename P::instance_type;
      set_families<instance>(e);
      e.emit = &emit_keyed<P>;
      check_name(key_label, "key_label");
      e.key_label = std::string(key_label);
    } else {
      set_families<P>(e);
      e.emit = &emit_one<P>;
    }
    fmt::memory_buffer rendered;
    for (const label& l : labels) {
      check_name(l.name, "label");
      if (l.name == key_label) refuse("label \"" + std::string(l.name) + "\" is also the key's label");
      for (const label& other : labels) {
        if (&other == &l) break;
        if (other.name == l.name) refuse("label \"" + std::string(l.name) + "\" is given twice");
      }
      if (rendered.size() != 0) rendered.push_back(',');
      detail::append(rendered, l.name);
      detail::append(rendered, "=\"");
      detail::append_escaped(rendered, l.value);
      rendered.push_back('"');
    }
    e.labels = fmt::to_string(rendered);
    return e;
  }

  static void check_name(std::string_view name, const char* what) {
    if (!detail::valid_label_name(name)) {
      refuse(std::string(what) + " name \"" + std::string(name) +
             "\" is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)");
    }
    for (const std::string_view r : detail::reserved_labels) {
      if (name == r) refuse(std::string(what) + " name \"" + std::string(name) + "\" is one armor adds itself");
    }
  }

  [[noreturn]] static void refuse(const std::string& what) {
    armor::detail::invalid_config("armor::prometheus::registry::add: " + what);
  }

  // Whether an earlier entry has the same families (they were written with it).
  [[nodiscard]] bool seen_before(std::size_t i) const noexcept {
    for (std::size_t j = 0; j < i; ++j) {
      if (entries_[j].same_families(entries_[i])) return true;
    }
    return false;
  }

  std::vector<entry> entries_;
};

}  // namespace armor::prometheus
