// armor/prometheus.hpp: the Prometheus text exposition format (version
// 0.0.4) for a set of named policies (needs fmt; link armor::fmt).
//
//     armor::prometheus::registry metrics;
//     metrics.add(s3_breaker, {{"upstream", "s3-products"}})
//            .add(s3_retries, {{"upstream", "s3-products"}})
//            .add(gemini_quota, {{"api", "gemini"}})
//            .add(per_ip_limits, {{"route", "/search"}}, "client");   // keyed: one series per key
//
//     // In the /metrics handler (Content-Type: text/plain; version=0.0.4):
//     fmt::memory_buffer body;
//     metrics.write(body);
//
// The registry holds references: every policy added must outlive it (or at
// least every write()). Adding is for setup (it allocates, and must not race
// with write()); write() may run on any number of threads at once, while
// the policies serve calls. It reads each policy's snapshot (stats(),
// usage(), available()) once per metric family, with relaxed loads: it takes
// no lock a call takes, except a keyed map's shard lock, shared, while it
// visits that shard's keys. It allocates nothing but what the output buffer
// needs to grow (reuse one buffer across scrapes and that settles to zero).
//
// The metrics, each family written once, with HELP and TYPE, its samples
// from every policy added (in the order added); every sample carries the
// policy's labels, and the key's label for a keyed policy:
//
//   circuit breaker
//     armor_circuit_breaker_state                  gauge    0 closed, 1 open, 2 half-open, 3 isolated, 4 disabled
//     armor_circuit_breaker_opened_total           counter
//     armor_circuit_breaker_calls_total            counter  {outcome="success|failure|ignored"} (success: count_calls only)
//     armor_circuit_breaker_slow_calls_total       counter
//     armor_circuit_breaker_rejected_total         counter  (count_calls only)
//     armor_circuit_breaker_consecutive_failures   gauge
//     armor_circuit_breaker_probes_in_flight       gauge
//     armor_circuit_breaker_window_calls           gauge
//     armor_circuit_breaker_failure_rate           gauge    in [0, 1]
//     armor_circuit_breaker_slow_call_rate         gauge    in [0, 1]
//   backoff
//     armor_retry_attempts_total                   counter  retries: attempts after a call's first
//     armor_retry_calls_total                      counter  (count_calls only)
//     armor_retry_successes_after_retry_total      counter
//     armor_retry_exhausted_total                  counter  calls that failed max_attempts times
//     armor_retry_budget_refused_total             counter
//     armor_retry_deadline_stopped_total           counter
//     armor_retry_non_retryable_total              counter
//     armor_retry_budget_tokens                    gauge    (with a retry budget only)
//   token bucket (the counters only with count_calls, never in a keyed map)
//     armor_rate_limit_tokens_per_second           gauge
//     armor_rate_limit_burst                       gauge
//     armor_rate_limit_available_tokens            gauge    below zero: owed to reservations
//     armor_rate_limit_full_in_seconds             gauge
//     armor_rate_limit_granted_total               counter
//     armor_rate_limit_rejected_total              counter  too few tokens
//     armor_rate_limit_too_large_total             counter  more than the burst
//   quota tracker (per window: window="minute|hour|day|week|month|fixed_<length>|rolling_<length>")
//     armor_quota_used                             gauge
//     armor_quota_limit                            gauge
//     armor_quota_reset_seconds                    gauge    time until the window resets
//     armor_quota_rejected_total                   counter  {reason="exhausted|too_large|invalid|unavailable"}
//     armor_quota_alerts_total                     counter
//
// Label names are checked when added (a Prometheus name, not starting with
// "__", none of the labels armor adds: outcome, reason, window, the key's);
// label values, keys included, are escaped (backslash, double quote, newline).
#pragma once

#include <armor/backoff.hpp>
#include <armor/bulkhead.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/error.hpp>
#include <armor/fmt.hpp>
#include <armor/keyed.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/token_bucket.hpp>

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
/// policy's (already escaped) labels, the key of a keyed policy, and at most
/// one label of the family's own.
class sample_writer {
 public:
  sample_writer(fmt::memory_buffer& out, std::string_view name, std::string_view labels) noexcept
      : out_(out), name_(name), labels_(labels) {}

  void key(std::string_view label_name, std::string_view key) noexcept {
    key_label_ = label_name;
    key_ = key;
  }

  template <class V>
  void sample(V value) {
    sample({}, {}, value);
  }

  template <class V>
  void sample(std::string_view extra_name, std::string_view extra_value, V value) {
    append(out_, name_);
    const bool any = !labels_.empty() || !key_label_.empty() || !extra_name.empty();
    if (any) {
      out_.push_back('{');
      bool first = true;
      const auto separate = [&] {
        if (!first) out_.push_back(',');
        first = false;
      };
      if (!labels_.empty()) {
        separate();
        append(out_, labels_);
      }
      if (!key_label_.empty()) {
        separate();
        append(out_, key_label_);
        append(out_, "=\"");
        append_escaped(out_, key_);
        out_.push_back('"');
      }
      if (!extra_name.empty()) {
        separate();
        append(out_, extra_name);
        append(out_, "=\"");
        append_escaped(out_, extra_value);
        out_.push_back('"');
      }
      out_.push_back('}');
    }
    out_.push_back(' ');
    write_value(value);
    out_.push_back('\n');
  }

 private:
  template <class V>
  void write_value(V v) {
    if constexpr (std::is_floating_point_v<V>) {
      if (std::isnan(v)) return append(out_, "NaN");
      if (std::isinf(v)) return append(out_, v > 0 ? "+Inf" : "-Inf");
      fmt::format_to(fmt::appender(out_), "{}", static_cast<double>(v));
    } else {
      fmt::format_to(fmt::appender(out_), "{}", v);
    }
  }

  fmt::memory_buffer& out_;
  std::string_view name_;
  std::string_view labels_;
  std::string_view key_label_;
  std::string_view key_;
};

// ---------------------------------------------------------------- what each policy writes

/// exporter<P>: `families` (a table shared by every P of one kind, which is
/// how samples of one family from different policies are kept together) and
/// `write(p, family index, writer)`.
template <class P>
struct exporter;

inline constexpr std::array<family, 10> breaker_families{{
    {"armor_circuit_breaker_state", "gauge",
     "Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 isolated (held open), 4 disabled (only recording)."},
    {"armor_circuit_breaker_opened_total", "counter", "Times the circuit breaker opened."},
    {"armor_circuit_breaker_calls_total", "counter",
     "Outcomes the circuit breaker recorded, by kind (success only with count_calls)."},
    {"armor_circuit_breaker_slow_calls_total", "counter", "Calls slower than slow_call_threshold."},
    {"armor_circuit_breaker_rejected_total", "counter",
     "Calls the circuit breaker refused (only with count_calls)."},
    {"armor_circuit_breaker_consecutive_failures", "gauge", "The current run of failures (closed or disabled)."},
    {"armor_circuit_breaker_probes_in_flight", "gauge", "Half-open probe slots taken."},
    {"armor_circuit_breaker_window_calls", "gauge", "Calls in the sliding window (0 without a rate rule)."},
    {"armor_circuit_breaker_failure_rate", "gauge", "Failures over calls in the sliding window, 0 to 1."},
    {"armor_circuit_breaker_slow_call_rate", "gauge", "Slow calls over calls in the sliding window, 0 to 1."},
}};

template <class Clock, class Listener>
struct exporter<circuit_breaker<Clock, Listener>> {
  static constexpr std::span<const family> families{breaker_families};

  static void write(const circuit_breaker<Clock, Listener>& b, std::size_t f, sample_writer& w) {
    const circuit_breaker_stats s = b.stats();
    switch (f) {
      case 0: return w.sample(static_cast<unsigned>(s.state));
      case 1: return w.sample(s.times_opened);
      case 2:
        if (b.options().count_calls) w.sample("outcome", "success", s.successes);
        w.sample("outcome", "failure", s.failures);
        return w.sample("outcome", "ignored", s.ignored);
      case 3: return w.sample(s.slow_calls);
      case 4:
        if (b.options().count_calls) w.sample(s.rejections);
        return;
      case 5: return w.sample(s.consecutive_failures);
      case 6: return w.sample(s.probes_in_flight);
      case 7: return w.sample(s.window_calls);
      case 8: return w.sample(s.failure_rate);
      case 9: return w.sample(s.slow_call_rate);
      default: return;
    }
  }
};

inline constexpr std::array<family, 8> backoff_families{{
    {"armor_retry_attempts_total", "counter", "Retries granted: attempts after a call's first one."},
    {"armor_retry_calls_total", "counter", "Calls through the retry policy (only with count_calls)."},
    {"armor_retry_successes_after_retry_total", "counter", "Calls that succeeded on a second or later attempt."},
    {"armor_retry_exhausted_total", "counter", "Calls that failed max_attempts times."},
    {"armor_retry_budget_refused_total", "counter", "Retries the retry budget refused."},
    {"armor_retry_deadline_stopped_total", "counter", "Retries given up because the delay would not fit the deadline."},
    {"armor_retry_non_retryable_total", "counter", "Calls ended by a non-retryable or cancelled attempt."},
    {"armor_retry_budget_tokens", "gauge", "Tokens left in the retry budget (retries stop at half)."},
}};

template <class Rng, class Listener>
struct exporter<backoff<Rng, Listener>> {
  static constexpr std::span<const family> families{backoff_families};

  static void write(const backoff<Rng, Listener>& b, std::size_t f, sample_writer& w) {
    if (f == 7) {
      if (const std::optional<double> tokens = b.budget_tokens()) w.sample(*tokens);
      return;
    }
    const backoff_stats s = b.stats();
    switch (f) {
      case 0: return w.sample(s.retries);
      case 1:
        if (b.options().count_calls) w.sample(s.calls);
        return;
      case 2: return w.sample(s.successes_after_retry);
      case 3: return w.sample(s.exhausted);
      case 4: return w.sample(s.budget_refusals);
      case 5: return w.sample(s.deadline_stops);
      case 6: return w.sample(s.non_retryable);
      default: return;
    }
  }
};

inline constexpr std::array<family, 7> bucket_families{{
    {"armor_rate_limit_tokens_per_second", "gauge", "The token bucket's refill rate."},
    {"armor_rate_limit_burst", "gauge", "The token bucket's size: tokens available at once."},
    {"armor_rate_limit_available_tokens", "gauge",
     "Whole tokens in the bucket now (below zero: owed to reservations)."},
    {"armor_rate_limit_full_in_seconds", "gauge", "Seconds until the token bucket is full again."},
    {"armor_rate_limit_granted_total", "counter", "Calls the token bucket granted, waits included (count_calls only)."},
    {"armor_rate_limit_rejected_total", "counter",
     "Calls the token bucket refused for too few tokens (count_calls only)."},
    {"armor_rate_limit_too_large_total", "counter",
     "Calls the token bucket refused for asking more than the burst (count_calls only)."},
}};

template <class Clock, bool Padded, class Listener>
struct exporter<token_bucket<Clock, Padded, Listener>> {
  static constexpr std::span<const family> families{bucket_families};

  static void write(const token_bucket<Clock, Padded, Listener>& b, std::size_t f, sample_writer& w) {
    const token_bucket_stats s = b.stats();
    switch (f) {
      case 0: return w.sample(static_cast<double>(s.rate.count) * 1e9 / static_cast<double>(s.rate.per.count()));
      case 1: return w.sample(s.burst);
      case 2: return w.sample(s.available);
      case 3: return w.sample(static_cast<double>(s.until_full.count()) / 1e9);
      default: break;
    }
    if (!s.counting) return;
    switch (f) {
      case 4: return w.sample(s.granted);
      case 5: return w.sample(s.rejected);
      case 6: return w.sample(s.too_large);
      default: return;
    }
  }
};

inline constexpr std::array<family, 4> bulkhead_families{{
    {"armor_bulkhead_in_use", "gauge", "Calls inside the bulkhead now."},
    {"armor_bulkhead_queued", "gauge", "Callers waiting for a bulkhead slot now."},
    {"armor_bulkhead_max_concurrent", "gauge", "The bulkhead's limit on calls inside at once."},
    {"armor_bulkhead_max_queue", "gauge", "The bulkhead's limit on callers waiting (0: it fails fast)."},
}};

template <class Listener>
struct exporter<basic_bulkhead<Listener>> {
  static constexpr std::span<const family> families{bulkhead_families};

  static void write(const basic_bulkhead<Listener>& b, std::size_t f, sample_writer& w) {
    const bulkhead_stats s = b.stats();
    switch (f) {
      case 0: return w.sample(s.in_use);
      case 1: return w.sample(s.queued);
      case 2: return w.sample(s.max_concurrent);
      case 3: return w.sample(s.max_queue);
      default: return;
    }
  }
};

inline constexpr std::array<family, 5> quota_families{{
    {"armor_quota_used", "gauge", "Units counted in the quota window now."},
    {"armor_quota_limit", "gauge", "Units the quota window allows per period."},
    {"armor_quota_reset_seconds", "gauge",
     "Seconds until the quota window resets (rolling: until its oldest units expire)."},
    {"armor_quota_rejected_total", "counter", "Consumptions the quota tracker refused, by reason."},
    {"armor_quota_alerts_total", "counter", "Quota alerts fired (once per threshold, window and period)."},
}};

/// A window's label value: minute, hour, day, week, month, fixed_<length>,
/// rolling_<length>; a name an earlier window already has gets "_<index>".
class window_name {
 public:
  window_name(const std::vector<quota_window>& windows, std::size_t w) {
    write(windows[w]);
    for (std::size_t i = 0; i < w; ++i) {
      window_name earlier;
      earlier.write(windows[i]);
      if (earlier.view() == view()) {
        append_index(w);
        break;
      }
    }
  }
  [[nodiscard]] std::string_view view() const noexcept { return {buf_.data(), size_}; }

 private:
  window_name() = default;

  void write(const quota_window& q) {
    using namespace std::chrono;
    switch (q.kind) {
      case quota_window_kind::week: return put("week");
      case quota_window_kind::month: return put("month");
      case quota_window_kind::fixed:
        if (q.length == minutes{1}) return put("minute");
        if (q.length == hours{1}) return put("hour");
        if (q.length == hours{24}) return put("day");
        put("fixed_");
        break;
      case quota_window_kind::rolling:
        put("rolling_");
        break;
    }
    // At most 20 characters ("2562047h47m16.854s"): the buffer has room.
    char* const end = armor::detail::fmt_duration(buf_.data() + size_, q.length);
    size_ = static_cast<std::size_t>(end - buf_.data());
  }

  void append_index(std::size_t i) {
    const auto r = fmt::format_to_n(buf_.data() + size_, buf_.size() - size_, "_{}", i);
    size_ = static_cast<std::size_t>(r.out - buf_.data());
  }

  void put(std::string_view s) {
    for (const char c : s) {
      if (size_ < buf_.size()) buf_[size_++] = c;
    }
  }

  std::array<char, 64> buf_{};
  std::size_t size_ = 0;
};

template <class WallClock, class Storage, class Listener>
struct exporter<quota_tracker<WallClock, Storage, Listener>> {
  static constexpr std::span<const family> families{quota_families};

  static void write(const quota_tracker<WallClock, Storage, Listener>& q, std::size_t f, sample_writer& w) {
    if (f <= 2) {
      for (std::size_t i = 0; i < q.window_count(); ++i) {
        const window_name name(q.options().windows, i);
        const quota_usage u = q.usage(i);
        switch (f) {
          case 0: w.sample("window", name.view(), u.used); break;
          case 1: w.sample("window", name.view(), u.limit); break;
          default: w.sample("window", name.view(), static_cast<double>(u.resets_in.count()) / 1e9); break;
        }
      }
      return;
    }
    const quota_tracker_stats s = q.stats();
    if (f == 3) {
      w.sample("reason", "exhausted", s.exhausted);
      w.sample("reason", "too_large", s.too_large);
      w.sample("reason", "invalid", s.invalid);
      return w.sample("reason", "unavailable", s.unavailable);
    }
    if (f == 4) w.sample(s.alerts);
  }
};

/// A keyed map writes what its instances write, one series per key.
template <class P, class Options, class Clock>
struct exporter<keyed<P, Options, Clock>> {
  using instance = typename keyed<P, Options, Clock>::instance_type;
  static constexpr std::span<const family> families = exporter<instance>::families;
};

template <class P>
concept exportable = requires { exporter<P>::families; };

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

  /// Adds a circuit breaker, backoff, token bucket or quota tracker, with the
  /// labels that tell it apart (name and value). Throws
  /// armor::error(invalid_argument) for a label name that is not a valid
  /// Prometheus label name, starts with "__", repeats, or is one armor adds
  /// (outcome, reason, window). `p` must outlive every write().
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

  /// Appends the exposition of every policy added to `out`.
  void write(fmt::memory_buffer& out) const {
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const std::span<const detail::family> families = entries_[i].families;
      if (seen_before(i)) continue;
      for (std::size_t f = 0; f < families.size(); ++f) {
        const detail::family& fam = families[f];
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
          if (e.families.data() != families.data()) continue;
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

  struct entry {
    std::span<const detail::family> families;
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
  static entry make_entry(const P& p, std::initializer_list<label> labels, std::string_view key_label) {
    entry e;
    e.families = detail::exporter<P>::families;
    e.policy = &p;
    if constexpr (detail::is_keyed<P>) {
      e.emit = &emit_keyed<P>;
      check_name(key_label, "key_label");
      e.key_label = std::string(key_label);
    } else {
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
      if (entries_[j].families.data() == entries_[i].families.data()) return true;
    }
    return false;
  }

  std::vector<entry> entries_;
};

}  // namespace armor::prometheus
