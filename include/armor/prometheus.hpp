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
// from those descriptions, so this header names no policy. Names are
// armor_* unless a prefix, rename() or constant labels say otherwise. The
// catalogue and naming: docs/observability.md.
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
    series({}, extra_name, extra_value, value);
  }

  /// The samples of one histogram: cumulative `_bucket`s (le="<seconds>",
  /// the last le="+Inf"), `_sum` in seconds, `_count`.
  template <class H>
  void histogram(const H& h) {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < h.bounds.size() && i < h.counts.size(); ++i) {
      cumulative += h.counts[i];
      fmt::memory_buffer le;
      fmt::format_to(fmt::appender(le), "{}", std::chrono::duration<double>(h.bounds[i]).count());
      series("_bucket", "le", std::string_view(le.data(), le.size()), static_cast<double>(cumulative));
    }
    series("_bucket", "le", "+Inf", static_cast<double>(h.count));
    series("_sum", {}, {}, std::chrono::duration<double>(h.sum).count());
    series("_count", {}, {}, static_cast<double>(h.count));
  }

 private:
  void series(std::string_view suffix, std::string_view extra_name, std::string_view extra_value, double value) {
    append(out_, name_);
    append(out_, suffix);
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

/// A histogram snapshot's shape (armor::histogram_snapshot).
template <class T>
concept histogram_like = requires(const T& h) {
  h.bounds.size();
  h.counts.size();
  h.sum;
  h.count;
};

/// Writes the samples of family `name` from snapshot `s`.
template <described_stats S>
void write_family(const S& s, std::string_view name, sample_writer& w) {
  armor::detail::for_each_field<S>([&](const auto& f) {
    if (f.metric != name || !armor::detail::exported(f, s)) return;
    using T = std::remove_cvref_t<decltype(s.*(f.member))>;
    if constexpr (histogram_like<T>) {
      w.histogram(s.*(f.member));
    } else {
      w.sample(f.label_name, f.label_value, armor::detail::metric_value(s.*(f.member)));
    }
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

/// Names armor gives labels of its own, which a policy's labels must not use
/// (`le` is a histogram bucket's bound).
inline constexpr std::array<std::string_view, 4> reserved_labels{"outcome", "reason", "window", "le"};

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

/// Prometheus' rule for a metric name: [a-zA-Z_:][a-zA-Z0-9_:]*, and not
/// starting with "__" (reserved).
[[nodiscard]] constexpr bool valid_metric_name(std::string_view n) noexcept {
  if (n.empty() || (n.size() >= 2 && n[0] == '_' && n[1] == '_')) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

[[nodiscard]] constexpr bool ends_with(std::string_view s, std::string_view tail) noexcept {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

}  // namespace detail

/// Names and labels for every policy of a registry.
struct registry_options {
  /// Replaces the leading "armor_" of every family name ("ducke_" gives
  /// ducke_circuit_breaker_state); empty keeps armor's names.
  std::string_view prefix{};
  /// Constant labels on every series (service, instance), before the
  /// policy's own.
  std::vector<label> labels{};
};

/// A set of policies to expose, each with its labels (see the top of this
/// header). Copyable (it copies the references, names and labels).
///
/// Naming: a registry-wide prefix and constant labels (registry_options),
/// and, for the policy added last, prefix(), rename() and only_renamed().
/// Every name and label is checked against Prometheus' rules when it is
/// given; a bad one throws armor::error(invalid_argument) naming it.
class registry {
 public:
  registry() = default;

  /// A registry whose families all carry `options.prefix` instead of
  /// "armor_" and whose series all carry `options.labels`. Throws
  /// armor::error(invalid_argument) for a prefix that does not make valid
  /// metric names, or a bad or repeated label name.
  explicit registry(const registry_options& options) {
    if (!options.prefix.empty()) {
      check_prefix(options.prefix, "registry_options::prefix");
      prefix_ = std::string(options.prefix);
    }
    fmt::memory_buffer rendered;
    for (const label& l : options.labels) {
      check_name(l.name, "registry_options::labels");
      for (const label& other : options.labels) {
        if (&other == &l) break;
        if (other.name == l.name) refuse("registry_options::labels: \"" + std::string(l.name) + "\" is given twice");
      }
      constant_names_.emplace_back(l.name);
      render(rendered, l);
    }
    constant_labels_ = fmt::to_string(rendered);
  }

  /// Adds a policy (any whose stats() describes its fields), with the labels
  /// that tell it apart. Throws armor::error(invalid_argument) for a label
  /// name that is not a valid Prometheus label name, starts with "__",
  /// repeats (a constant label included), or is one armor adds (outcome,
  /// reason, window, le). `p` must outlive every write().
  template <class P>
    requires(detail::exportable<P> && !detail::is_keyed<P>)
  registry& add(const P& p, std::initializer_list<label> labels = {}) {
    entries_.push_back(make_entry(p, labels, {}));
    check_types(entries_.size() - 1);
    return *this;
  }

  /// Adds a keyed map: one series per key, the key in the label
  /// `key_label` ("key" by default; `bucket`, `ip`, ...), next to `labels`.
  template <class P, class Options, class Clock>
    requires detail::exportable<typename keyed<P, Options, Clock>::instance_type>
  registry& add(const keyed<P, Options, Clock>& k, std::initializer_list<label> labels = {},
                std::string_view key_label = "key") {
    entries_.push_back(make_entry(k, labels, key_label));
    check_types(entries_.size() - 1);
    return *this;
  }

  /// The policy added last: its families not renamed carry `p` instead of
  /// "armor_" (overrides the registry's prefix). Throws for a prefix that
  /// does not make valid metric names, or when nothing was added yet.
  registry& prefix(std::string_view p) {
    entry& e = last("prefix");
    check_prefix(p, "prefix");
    std::vector<std::string> names = e.names;
    for (std::size_t f = 0; f < e.family_count; ++f) {
      if (!e.renamed[f]) names[f] = with_prefix(e.family_at(f).name, p);
    }
    commit_names(std::move(names));
    return *this;
  }

  /// The policy added last: exports its family `from` (armor's name, e.g.
  /// "armor_bulkhead_rejected_total") as `to` (e.g.
  /// "concurrency_limit_rejections_total"). Throws armor::error
  /// (invalid_argument) when the policy feeds no family `from`, when `to` is
  /// not a valid metric name, when a counter's new name does not end in
  /// "_total" (or another's does), or when `to` is a family of another type.
  registry& rename(std::string_view from, std::string_view to) {
    entry& e = last("rename");
    std::size_t f = 0;
    while (f < e.family_count && e.family_at(f).name != from) ++f;
    if (f == e.family_count) {
      std::string known;
      for (std::size_t i = 0; i < e.family_count; ++i) known += (i ? ", " : "") + std::string(e.family_at(i).name);
      refuse("rename: the policy feeds no family \"" + std::string(from) + "\" (it feeds " + known + ")");
    }
    if (f == e.off) {
      refuse("rename: \"" + std::string(from) +
             "\" is written only for a keyed map with keyed_options::rejected_keys above 0 (this map's is 0)");
    }
    if (!detail::valid_metric_name(to)) {
      refuse("rename: \"" + std::string(to) +
             "\" is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*, not starting with __)");
    }
    const bool counter = e.family_at(f).type == to_string(metric_type::counter);
    if (counter != detail::ends_with(to, "_total")) {
      refuse("rename: \"" + std::string(to) + "\" " +
             (counter ? "names a counter and must end in _total" : "is not a counter and must not end in _total"));
    }
    for (std::size_t i = 0; i < e.family_count; ++i) {
      if (i != f && e.names[i] == to) refuse("rename: \"" + std::string(to) + "\" is already a family of this policy");
    }
    std::vector<std::string> names = e.names;
    names[f] = std::string(to);
    commit_names(std::move(names));
    e.renamed[f] = true;
    return *this;
  }

  /// The policy added last exports only the families rename() named.
  registry& only_renamed() {
    entry& e = last("only_renamed");
    e.only_renamed = true;
    return *this;
  }

  /// Policies added.
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

  /// Appends the exposition of every policy added to `out`: each family
  /// once, with HELP and TYPE, then its samples from every policy that
  /// feeds it, in the order added.
  void write(fmt::memory_buffer& out) const {
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const entry& first = entries_[i];
      for (std::size_t f = 0; f < first.family_count; ++f) {
        if (!first.exports(f) || written_before(i, f)) continue;
        const std::string& name = first.names[f];
        const detail::family& fam = first.family_at(f);
        detail::append(out, "# HELP ");
        detail::append(out, name);
        out.push_back(' ');
        detail::append(out, fam.help);
        detail::append(out, "\n# TYPE ");
        detail::append(out, name);
        out.push_back(' ');
        detail::append(out, fam.type);
        out.push_back('\n');
        for (std::size_t j = i; j < entries_.size(); ++j) {
          const entry& e = entries_[j];
          for (std::size_t g = j == i ? f : 0; g < e.family_count; ++g) {
            if (!e.exports(g) || e.names[g] != name) continue;
            detail::sample_writer w(out, name, e.labels);
            e.emit(e.policy, g, w, e.key_label);
          }
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
    std::vector<std::string> names;  // per family: the name written
    std::vector<bool> renamed;       // per family: named by rename()
    bool only_renamed = false;
    const void* policy = nullptr;
    emit_fn emit = nullptr;
    std::string labels;     // rendered: name="escaped value",... (constant labels first)
    std::string key_label;  // keyed maps only
    std::size_t off = static_cast<std::size_t>(-1);  // a family with nothing to write (a keyed map's per-key refusals)
    [[nodiscard]] bool exports(std::size_t f) const noexcept { return f != off && (!only_renamed || renamed[f]); }
  };

  template <class P>
  static void emit_one(const void* p, std::size_t f, detail::sample_writer& w, std::string_view) {
    detail::exporter<P>::write(*static_cast<const P*>(p), f, w);
  }

  // A keyed map: its instances' families, one series per key, then the
  // map's own (keyed_stats), without the key's label, then its refusals per
  // key (keyed_options::rejected_keys; not written when that is 0).
  static constexpr detail::family key_rejected_family{
      "armor_keyed_key_rejected_total", "counter",
      "Calls refused by their key's policy, per key: the first rejected_keys keys refused, the rest as \"other\"."};

  template <class K>
  struct keyed_families {
    using per_key = detail::exporter<typename K::instance_type>;
    using own = detail::exporter<K>;
    static constexpr std::size_t rejected = per_key::size + own::size;  // the per-key refusals' index
    static constexpr std::size_t size = rejected + 1;
    [[nodiscard]] static const detail::family& at(std::size_t f) noexcept {
      if (f == rejected) return key_rejected_family;
      return f < per_key::size ? per_key::at(f) : own::at(f - per_key::size);
    }
  };

  template <class K>
  static void emit_keyed(const void* p, std::size_t f, detail::sample_writer& w, std::string_view key_label) {
    using instance = typename K::instance_type;
    const K& k = *static_cast<const K*>(p);
    if (f == keyed_families<K>::rejected) {
      k.for_each_rejected([&](std::string_view key, std::uint64_t n) {
        w.key(key_label, key);
        w.sample({}, {}, static_cast<double>(n));
      });
      w.key(key_label, armor::detail::key_tally::other_key);
      w.sample({}, {}, static_cast<double>(k.rejected_other()));
      return;
    }
    if (f >= keyed_families<K>::per_key::size) {
      keyed_families<K>::own::write(k, f - keyed_families<K>::per_key::size, w);
      return;
    }
    k.for_each([&](std::string_view key, const instance& i) {
      w.key(key_label, key);
      detail::exporter<instance>::write(i, f, w);
    });
  }

  template <class P>
  static void set_families(entry& e) noexcept {
    using x = detail::exporter<P>;
    e.family_at = &x::at;
    e.family_count = x::size;
  }

  template <class P>
  entry make_entry(const P& p, std::initializer_list<label> labels, std::string_view key_label) const {
    entry e;
    e.policy = &p;
    if constexpr (detail::is_keyed<P>) {
      e.family_at = &keyed_families<P>::at;
      e.family_count = keyed_families<P>::size;
      e.emit = &emit_keyed<P>;
      check_name(key_label, "key_label");
      e.key_label = std::string(key_label);
      if (p.rejected_keys() == 0) e.off = keyed_families<P>::rejected;
    } else {
      set_families<P>(e);
      e.emit = &emit_one<P>;
    }
    for (std::size_t f = 0; f < e.family_count; ++f) {
      e.names.push_back(prefix_.empty() ? std::string(e.family_at(f).name) : with_prefix(e.family_at(f).name, prefix_));
    }
    e.renamed.assign(e.family_count, false);
    for (const std::string& c : constant_names_) {
      if (c == key_label) refuse("label \"" + c + "\" is both a constant label and the key's label");
    }
    fmt::memory_buffer rendered;
    detail::append(rendered, constant_labels_);
    for (const label& l : labels) {
      check_name(l.name, "label");
      if (l.name == key_label) refuse("label \"" + std::string(l.name) + "\" is also the key's label");
      for (const label& other : labels) {
        if (&other == &l) break;
        if (other.name == l.name) refuse("label \"" + std::string(l.name) + "\" is given twice");
      }
      for (const std::string& c : constant_names_) {
        if (c == l.name) refuse("label \"" + c + "\" is already a constant label of the registry");
      }
      render(rendered, l);
    }
    e.labels = fmt::to_string(rendered);
    return e;
  }

  static void render(fmt::memory_buffer& out, const label& l) {
    if (out.size() != 0) out.push_back(',');
    detail::append(out, l.name);
    detail::append(out, "=\"");
    detail::append_escaped(out, l.value);
    out.push_back('"');
  }

  // armor's family name with "armor_" replaced by `prefix`.
  static std::string with_prefix(std::string_view armor_name, std::string_view prefix) {
    constexpr std::string_view ours = "armor_";
    if (armor_name.substr(0, ours.size()) == ours) armor_name.remove_prefix(ours.size());
    return std::string(prefix) + std::string(armor_name);
  }

  static void check_prefix(std::string_view p, const char* what) {
    if (!detail::valid_metric_name(std::string(p) + "x")) {
      refuse(std::string(what) + " \"" + std::string(p) +
             "\" does not start a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*, not starting with __)");
    }
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
    armor::detail::invalid_config("armor::prometheus::registry: " + what);
  }

  entry& last(const char* what) {
    if (entries_.empty()) refuse(std::string(what) + ": add a policy first (it applies to the policy added last)");
    return entries_.back();
  }

  // Gives the policy added last `names`, unless that makes one name a
  // family of two types (then it keeps its names and this throws).
  void commit_names(std::vector<std::string> names) {
    entry& e = entries_.back();
    std::swap(e.names, names);
    try {
      check_types(entries_.size() - 1);
    } catch (...) {
      std::swap(e.names, names);
      throw;
    }
  }

  // A family name used twice must keep one type (Prometheus has one TYPE
  // line per family).
  void check_types(std::size_t i) const {
    const entry& e = entries_[i];
    for (std::size_t f = 0; f < e.family_count; ++f) {
      for (std::size_t j = 0; j < entries_.size(); ++j) {
        const entry& o = entries_[j];
        for (std::size_t g = 0; g < o.family_count; ++g) {
          if ((j == i && g == f) || o.names[g] != e.names[f]) continue;
          if (o.family_at(g).type != e.family_at(f).type) {
            refuse("family \"" + e.names[f] + "\" would be both a " + std::string(o.family_at(g).type) + " and a " +
                   std::string(e.family_at(f).type));
          }
        }
      }
    }
  }

  // Whether family f of entry i was written with an earlier one of the same name.
  [[nodiscard]] bool written_before(std::size_t i, std::size_t f) const noexcept {
    const std::string& name = entries_[i].names[f];
    for (std::size_t j = 0; j <= i; ++j) {
      const entry& o = entries_[j];
      const std::size_t end = j == i ? f : o.family_count;
      for (std::size_t g = 0; g < end; ++g) {
        if (o.exports(g) && o.names[g] == name) return true;
      }
    }
    return false;
  }

  std::string prefix_;
  std::string constant_labels_;
  std::vector<std::string> constant_names_;
  std::vector<entry> entries_;
};

}  // namespace armor::prometheus
