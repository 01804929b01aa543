// armor/readiness.hpp: armor::readiness, one object a service registers its
// policies with (host sets, circuit breakers, quota trackers, the load
// shedder, a drain, bulkheads, or a check of its own), each required or
// optional, that answers "ready?" and "live?" with a reason per policy and
// renders the answer as JSON for `/ready` and `/live` endpoints.
//
//     armor::host_set<> upstream;
//     armor::load_shedder<> shedder{{.resources = {{.name = "memory"}}}};
//     armor::readiness health;
//     health.add("payments", upstream).add("shedder", shedder);
//     const armor::readiness_report r = health.ready();
//     respond(r.http_status(), r.json());  // 503 and {"status":"not_ready",...}: no healthy host
//
// Not ready when a required host set has no healthy host, a required
// breaker is open (or isolated), a required quota window is used up, the
// shedder refuses normal calls, a drain has started, a bulkhead is full,
// or a required check fails; optional ones are reported, never decisive.
// Live unless a check added with add_live() fails. Registration and
// evaluation share a mutex (neither is a hot path); evaluation reads the
// policies' lock-free state and never blocks their calls (a durable quota
// tracker reads its storage). The rules and the JSON: docs/readiness.md.
#pragma once

#include <armor/error.hpp>

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace armor {

/// Whether a registered policy decides readiness or is only reported.
enum class readiness_role : std::uint8_t {
  required,  ///< not ready while it is not ok
  optional,  ///< reported; never makes the service not ready
};

/// The enumerator's name: "required", "optional".
[[nodiscard]] constexpr std::string_view to_string(readiness_role r) noexcept {
  switch (r) {
    case readiness_role::required: return "required";
    case readiness_role::optional: return "optional";
  }
  return "unknown";
}

/// One registered policy's answer.
struct readiness_check {
  std::string name;
  std::string_view kind;  ///< "host_set", "circuit_breaker", "quota_tracker", "load_shedder", "drain", "bulkhead", "check"
  readiness_role role = readiness_role::required;
  bool ok = true;
  std::string detail;  ///< why, in a few words
};

namespace detail {

// Appends s to out as the inside of a JSON string: quote, backslash and
// control characters escaped; other bytes (UTF-8) as they are.
inline void json_escape(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xF];
        } else {
          out += ch;
        }
    }
  }
}

}  // namespace detail

/// The answer to ready() or live(): ok, and each registered policy's answer
/// in the order of registration.
struct readiness_report {
  bool ok = true;
  std::vector<readiness_check> checks;

  /// 200 when ok, else 503.
  [[nodiscard]] int http_status() const noexcept { return ok ? 200 : 503; }

  /// The report as one line of JSON, for instance
  /// `{"status":"ready","checks":[{"name":"db","kind":"host_set","required":true,"ok":true,"detail":"2 of 2 hosts healthy"}]}`.
  /// `status` is `ok_status` or `failing_status` ("ready" and "not_ready" for
  /// ready(), "live" and "not_live" for live(): see readiness::ready_json()).
  [[nodiscard]] std::string json(std::string_view ok_status = "ready", std::string_view failing_status = "not_ready") const {
    std::string out = "{\"status\":\"";
    detail::json_escape(out, ok ? ok_status : failing_status);
    out += "\",\"checks\":[";
    for (std::size_t i = 0; i < checks.size(); ++i) {
      const readiness_check& c = checks[i];
      if (i > 0) out += ',';
      out += "{\"name\":\"";
      detail::json_escape(out, c.name);
      out += "\",\"kind\":\"";
      detail::json_escape(out, c.kind);
      out += "\",\"required\":";
      out += c.role == readiness_role::required ? "true" : "false";
      out += ",\"ok\":";
      out += c.ok ? "true" : "false";
      out += ",\"detail\":\"";
      detail::json_escape(out, c.detail);
      out += "\"}";
    }
    out += "]}";
    return out;
  }
};

namespace detail {

inline void readiness_count(std::string& out, std::uint64_t n) { out += std::to_string(n); }

// What each kind of policy says. Duck-typed, so this header includes none
// of theirs.
template <class P>
struct readiness_probe {
  static constexpr bool host_set = requires(const P& p) {
    p.healthy_hosts();
    p.stats().hosts;
  };
  static constexpr bool breaker = requires(const P& p) {
    p.state();
    p.stats().times_opened;
  };
  static constexpr bool quota = requires(const P& p) {
    p.window_count();
    p.window_name(std::size_t{0});
    p.usage(std::size_t{0}).limit;
  };
  static constexpr bool shedder = requires(const P& p) {
    p.admits();
    p.level();
    p.mode();
  };
  static constexpr bool drain = requires(const P& p) {
    p.draining();
    p.stats().in_flight;
  };
  static constexpr bool bulkhead = requires(const P& p) {
    p.stats().in_use;
    p.stats().max_concurrent;
    p.stats().max_queue;
  };
  static constexpr bool check = std::is_invocable_r_v<bool, const P&, std::string&>;
  static constexpr bool known = host_set || breaker || quota || shedder || drain || bulkhead || check;

  static constexpr std::string_view kind() noexcept {
    if constexpr (host_set) return "host_set";
    else if constexpr (breaker) return "circuit_breaker";
    else if constexpr (quota) return "quota_tracker";
    else if constexpr (shedder) return "load_shedder";
    else if constexpr (drain) return "drain";
    else if constexpr (bulkhead) return "bulkhead";
    else return "check";
  }

  static bool eval(const void* object, std::string& why) {
    const P& p = *static_cast<const P*>(object);
    if constexpr (host_set) {
      const std::uint64_t listed = p.stats().hosts;
      const std::uint64_t healthy = p.healthy_hosts();
      if (listed == 0) {
        why = "no host listed";
        return false;
      }
      readiness_count(why, healthy);
      why += " of ";
      readiness_count(why, listed);
      why += listed == 1 ? " host healthy" : " hosts healthy";
      return healthy > 0;
    } else if constexpr (breaker) {
      const std::string_view state = to_string(p.state());
      why = "state ";
      why += state;
      return state != "open" && state != "isolated";
    } else if constexpr (quota) {
      bool ok = true;
      try {
        for (std::size_t w = 0; w < p.window_count(); ++w) {
          const auto u = p.usage(w);
          if (!why.empty()) why += ", ";
          why += p.window_name(w);
          why += ' ';
          readiness_count(why, static_cast<std::uint64_t>(u.used < 0 ? 0 : u.used));
          why += '/';
          readiness_count(why, static_cast<std::uint64_t>(u.limit < 0 ? 0 : u.limit));
          if (u.used >= u.limit) {
            why += " used up";
            ok = false;
          }
        }
      } catch (const std::exception& e) {
        why = "usage unknown: ";
        why += e.what();
        return false;
      }
      return ok;
    } else if constexpr (shedder) {
      why = "level ";
      why += to_string(p.level());
      why += ", mode ";
      why += to_string(p.mode());
      const bool ok = p.admits();
      if (!ok) why += ": refusing normal calls";
      return ok;
    } else if constexpr (drain) {
      const auto s = p.stats();
      why = s.draining ? "draining, " : "accepting, ";
      readiness_count(why, s.in_flight);
      why += " in flight";
      return !s.draining;
    } else if constexpr (bulkhead) {
      const auto s = p.stats();
      why = "in use ";
      readiness_count(why, s.in_use);
      why += '/';
      readiness_count(why, s.max_concurrent);
      why += ", queued ";
      readiness_count(why, s.queued);
      why += '/';
      readiness_count(why, s.max_queue);
      const bool full = s.in_use >= s.max_concurrent && s.queued >= s.max_queue;
      if (full) why += ": full";
      return !full;
    } else {
      return static_cast<bool>(p(why));
    }
  }
};

struct readiness_entry {
  std::string name;
  std::string_view kind;
  readiness_role role = readiness_role::required;
  const void* object = nullptr;
  std::shared_ptr<const void> owned;  // a check's copy, else empty
  bool (*eval)(const void*, std::string&) = nullptr;
  bool live = false;  // answers live() instead of ready()
};

}  // namespace detail

/// A readiness and liveness report (see the top of this header and
/// docs/readiness.md). Not copyable or movable: register it once and keep
/// it beside the policies, which must outlive it or be removed first.
class readiness {
 public:
  readiness() = default;
  readiness(const readiness&) = delete;
  readiness& operator=(const readiness&) = delete;

  /// Registers a policy (held by reference: it must outlive its
  /// registration) or a check (a callable `bool(std::string& detail)`,
  /// copied) under `name`. Throws armor::error(errc::invalid_argument) for a
  /// name already registered or empty. Returns *this, to chain.
  template <class P>
  readiness& add(std::string name, const P& policy, readiness_role role = readiness_role::required) {
    static_assert(detail::readiness_probe<P>::known,
                  "armor::readiness::add: P must be a host_set, circuit_breaker, quota_tracker, load_shedder, "
                  "drain, bulkhead, or a callable bool(std::string& detail)");
    detail::readiness_entry e{std::move(name), detail::readiness_probe<P>::kind(), role, &policy, {},
                              &detail::readiness_probe<P>::eval, false};
    if constexpr (detail::readiness_probe<P>::kind() == "check") {
      auto copy = std::make_shared<const P>(policy);
      e.object = copy.get();
      e.owned = std::move(copy);
    }
    insert(std::move(e));
    return *this;
  }

  /// Registers a liveness check (a callable `bool(std::string& detail)`,
  /// copied): live() fails while it returns false. Throws as add() does.
  template <class Check>
  readiness& add_live(std::string name, Check check) {
    static_assert(std::is_invocable_r_v<bool, const Check&, std::string&>,
                  "armor::readiness::add_live: the check must be callable as bool(std::string& detail)");
    auto copy = std::make_shared<const Check>(std::move(check));
    detail::readiness_entry e{std::move(name), "check", readiness_role::required, copy.get(), copy,
                              &detail::readiness_probe<Check>::eval, true};
    insert(std::move(e));
    return *this;
  }

  /// Unregisters `name`; false if it was not registered.
  bool remove(std::string_view name) {
    const std::scoped_lock lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->name == name) {
        entries_.erase(it);
        return true;
      }
    }
    return false;
  }

  /// Ready: every required policy registered with add() is ok.
  [[nodiscard]] readiness_report ready() const { return evaluate(false); }
  /// Live: every check registered with add_live() is ok (live when there is none).
  [[nodiscard]] readiness_report live() const { return evaluate(true); }
  /// ready() as JSON: status "ready" or "not_ready".
  [[nodiscard]] std::string ready_json() const { return ready().json("ready", "not_ready"); }
  /// live() as JSON: status "live" or "not_live".
  [[nodiscard]] std::string live_json() const { return live().json("live", "not_live"); }

 private:
  void insert(detail::readiness_entry e) {
    if (e.name.empty()) detail::invalid_config("armor::readiness: a name must not be empty");
    const std::scoped_lock lock(mutex_);
    for (const detail::readiness_entry& x : entries_) {
      if (x.name == e.name) detail::invalid_config("armor::readiness: name \"" + e.name + "\" is registered twice");
    }
    entries_.push_back(std::move(e));
  }

  [[nodiscard]] readiness_report evaluate(bool live) const {
    readiness_report r;
    const std::scoped_lock lock(mutex_);
    for (const detail::readiness_entry& e : entries_) {
      if (e.live != live) continue;
      readiness_check c{e.name, e.kind, e.role, true, {}};
      c.ok = e.eval(e.object, c.detail);
      if (!c.ok && e.role == readiness_role::required) r.ok = false;
      r.checks.push_back(std::move(c));
    }
    return r;
  }

  mutable std::mutex mutex_;
  std::vector<detail::readiness_entry> entries_;
};

}  // namespace armor
