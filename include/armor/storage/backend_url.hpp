// armor/storage/backend_url.hpp: where shared state lives, said in one
// string read from configuration (an environment variable, a config file),
// so that moving a quota from one machine to Redis changes configuration,
// not code: `memory:`, `sqlite:///var/lib/app/quota.db?mode=batched`,
// `redis://:secret@10.0.0.5:6379?command_timeout=50ms`, Sentinel
// (`redis+sentinel://s1,s2/mymaster/0`) and Cluster (`redis+cluster://n1,n2`).
//
// parse_backend_url() checks the syntax and names the part that is wrong;
// each backend turns a parsed URL into its options and refuses parameters it
// does not know (sqlite_quota_options_from_url in armor/storage/sqlite.hpp,
// redis_quota_config_from_url in armor/redis/quota_storage.hpp). Grammar and
// parameters: docs/backend_urls.md.
//
//     const armor::backend_url u = armor::parse_backend_url("redis://127.0.0.1:6380?prefix=app");
//     const bool as_written = u.scheme == armor::backend_scheme::redis && u.hosts[0].port == 6380 &&
//                             u.param("prefix") == "app";
#pragma once

#include <armor/error.hpp>

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace armor {

/// The kind of backend a URL names.
enum class backend_scheme : std::uint8_t {
  memory,          ///< `memory:`: this process only
  sqlite,          ///< `sqlite:PATH`: a file shared by the processes of one machine
  redis,           ///< `redis://host:port`: one Redis server
  redis_sentinel,  ///< `redis+sentinel://sentinel,...,sentinel/master`: a primary found through Sentinel
  redis_cluster,   ///< `redis+cluster://node,...,node`: a Redis Cluster, found from seed nodes
};

/// The name of a backend_scheme, as written in the code (`redis_sentinel`).
[[nodiscard]] constexpr std::string_view to_string(backend_scheme s) noexcept {
  switch (s) {
    case backend_scheme::memory: return "memory";
    case backend_scheme::sqlite: return "sqlite";
    case backend_scheme::redis: return "redis";
    case backend_scheme::redis_sentinel: return "redis_sentinel";
    case backend_scheme::redis_cluster: return "redis_cluster";
  }
  return "unknown";
}

/// A host and a port of a backend URL (an IPv6 address without its brackets).
struct backend_endpoint {
  std::string host;
  std::uint16_t port = 0;
};

/// A backend URL taken apart (armor::parse_backend_url); every part
/// percent-decoded.
struct backend_url {
  backend_scheme scheme = backend_scheme::memory;
  std::string user{};                    ///< redis*: before the ':' of the user information (often empty)
  std::string password{};                ///< redis*: after it
  std::vector<backend_endpoint> hosts{}; ///< redis*: one or more, in the order written
  /// sqlite: the database file; redis+sentinel: the primary's name;
  /// redis: the database number's digits ("" when none was written).
  std::string path{};
  /// redis+sentinel: the database number's digits after the primary's name
  /// (`/mymaster/0`; "" when none was written).
  std::string database{};
  /// The query's name=value pairs, in the order written; names are unique.
  std::vector<std::pair<std::string, std::string>> params{};

  /// The value of query parameter `name`, if the URL has it.
  [[nodiscard]] std::optional<std::string_view> param(std::string_view name) const noexcept {
    for (const auto& [k, v] : params) {
      if (k == name) return std::string_view{v};
    }
    return std::nullopt;
  }
};

namespace detail {

[[noreturn]] inline void bad_backend_url(std::string_view url, const std::string& what) {
  invalid_config("armor::parse_backend_url: \"" + std::string(url) + "\": " + what);
}

[[nodiscard]] inline int url_hex(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Percent-decodes `in` (the part named `what` of `url`).
[[nodiscard]] inline std::string url_decode(std::string_view url, std::string_view what, std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    const bool two = i + 2 < in.size();
    const int hi = two ? url_hex(in[i + 1]) : -1;
    const int lo = two ? url_hex(in[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      bad_backend_url(url, std::string(what) + ": '%' must be followed by two hexadecimal digits");
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

[[nodiscard]] inline backend_endpoint url_endpoint(std::string_view url, std::string_view in,
                                                   std::uint16_t default_port) {
  backend_endpoint e;
  std::string_view port;
  if (!in.empty() && in.front() == '[') {
    const auto close = in.find(']');
    if (close == std::string_view::npos) bad_backend_url(url, "host \"" + std::string(in) + "\": '[' without ']'");
    e.host = std::string(in.substr(1, close - 1));
    const std::string_view rest = in.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        bad_backend_url(url, "host \"" + std::string(in) + "\": only ':port' may follow ']'");
      }
      port = rest.substr(1);
      if (port.empty()) bad_backend_url(url, "host \"" + std::string(in) + "\": empty port after ':'");
    }
    if (e.host.find(':') == std::string::npos) {
      bad_backend_url(url, "host \"" + std::string(in) + "\": brackets are for IPv6 addresses");
    }
  } else {
    const auto colon = in.rfind(':');
    if (colon != std::string_view::npos) {
      if (in.find(':') != colon) {
        bad_backend_url(url, "host \"" + std::string(in) + "\": an IPv6 address goes in brackets ([::1]:6379)");
      }
      port = in.substr(colon + 1);
      if (port.empty()) bad_backend_url(url, "host \"" + std::string(in) + "\": empty port after ':'");
      in = in.substr(0, colon);
    }
    e.host = url_decode(url, "host", in);
  }
  if (e.host.empty()) bad_backend_url(url, "a host is empty");
  for (const char c : e.host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '-' || c == '_' || c == ':';
    if (!ok) bad_backend_url(url, "host \"" + e.host + "\": a host name or an IP address was expected");
  }
  if (port.empty()) {
    e.port = default_port;
    return e;
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc{} || end != port.data() + port.size() || value == 0 || value > 65535) {
    bad_backend_url(url, "port \"" + std::string(port) + "\": a number in [1, 65535] was expected");
  }
  e.port = static_cast<std::uint16_t>(value);
  return e;
}

inline void url_query(std::string_view url, std::string_view query, backend_url& out) {
  if (query.empty()) return;
  std::size_t from = 0;
  for (;;) {
    const auto amp = query.find('&', from);
    const std::string_view pair = query.substr(from, amp == std::string_view::npos ? amp : amp - from);
    const auto eq = pair.find('=');
    if (pair.empty() || eq == 0 || eq == std::string_view::npos) {
      bad_backend_url(url, "query parameter \"" + std::string(pair) + "\": name=value was expected");
    }
    std::string name = url_decode(url, "query parameter name", pair.substr(0, eq));
    std::string value = url_decode(url, "query parameter " + name, pair.substr(eq + 1));
    if (out.param(name)) bad_backend_url(url, "query parameter \"" + name + "\" is given twice");
    out.params.emplace_back(std::move(name), std::move(value));
    if (amp == std::string_view::npos) return;
    from = amp + 1;
  }
}

}  // namespace detail

/// Takes a backend URL apart and checks its syntax (the grammar:
/// docs/backend_urls.md). Throws armor::error(errc::invalid_argument) with a
/// message naming the part that is wrong: an unknown scheme, a missing host,
/// a port out of range, a bad '%' escape, a repeated parameter. Parameter
/// names and values are checked by the backend that reads them.
[[nodiscard]] inline backend_url parse_backend_url(std::string_view url) {
  const auto colon = url.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    detail::bad_backend_url(url, "no scheme (memory:, sqlite:, redis://, redis+sentinel://, redis+cluster://)");
  }
  const std::string_view scheme = url.substr(0, colon);
  std::string_view rest = url.substr(colon + 1);
  backend_url out;
  // The query, if any, ends every form.
  std::string_view query;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
    if (query.empty()) detail::bad_backend_url(url, "'?' without a query");
  }
  if (rest.find('#') != std::string_view::npos || query.find('#') != std::string_view::npos) {
    detail::bad_backend_url(url, "a fragment ('#') has no meaning here");
  }

  if (scheme == "memory") {
    out.scheme = backend_scheme::memory;
    if (!rest.empty() && rest != "//") {
      detail::bad_backend_url(url, "memory: takes no host or path (got \"" + std::string(rest) + "\")");
    }
  } else if (scheme == "sqlite") {
    out.scheme = backend_scheme::sqlite;
    if (rest.starts_with("//")) {
      rest.remove_prefix(2);
      if (rest.empty() || rest.front() != '/') {
        detail::bad_backend_url(url, "sqlite: has no host: write sqlite:///absolute/path or sqlite:relative/path");
      }
    }
    out.path = detail::url_decode(url, "path", rest);
    if (out.path.empty()) detail::bad_backend_url(url, "sqlite: the database file's path is missing");
  } else if (scheme == "redis" || scheme == "redis+sentinel" || scheme == "redis+cluster") {
    out.scheme = scheme == "redis"            ? backend_scheme::redis
                 : scheme == "redis+sentinel" ? backend_scheme::redis_sentinel
                                              : backend_scheme::redis_cluster;
    if (!rest.starts_with("//")) {
      detail::bad_backend_url(url, std::string(scheme) + ": '//' and a host were expected after the scheme");
    }
    rest.remove_prefix(2);
    const auto slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    const std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
      const std::string_view info = authority.substr(0, at);
      const auto c = info.find(':');
      out.user = detail::url_decode(url, "user", info.substr(0, c));
      if (c != std::string_view::npos) out.password = detail::url_decode(url, "password", info.substr(c + 1));
      authority = authority.substr(at + 1);
    }
    if (authority.empty()) detail::bad_backend_url(url, std::string(scheme) + ": a host is missing");
    const std::uint16_t default_port = out.scheme == backend_scheme::redis_sentinel ? 26379 : 6379;
    std::size_t from = 0;
    for (;;) {
      const auto comma = authority.find(',', from);
      const std::string_view one =
          authority.substr(from, comma == std::string_view::npos ? comma : comma - from);
      out.hosts.push_back(detail::url_endpoint(url, one, default_port));
      if (comma == std::string_view::npos) break;
      from = comma + 1;
    }
    if (out.scheme == backend_scheme::redis && out.hosts.size() > 1) {
      detail::bad_backend_url(url, "redis: names one server; several are for redis+sentinel or redis+cluster");
    }
    out.path = detail::url_decode(url, "path", path);
    if (out.scheme == backend_scheme::redis && !out.path.empty()) {
      unsigned db = 0;
      const auto [end, ec] = std::from_chars(out.path.data(), out.path.data() + out.path.size(), db);
      if (ec != std::errc{} || end != out.path.data() + out.path.size()) {
        detail::bad_backend_url(url, "redis: the path is a database number (got \"" + out.path + "\")");
      }
    }
    if (out.scheme == backend_scheme::redis_sentinel) {
      // PRIMARY-NAME[/DB]
      if (const auto s = out.path.find('/'); s != std::string::npos) {
        out.database = out.path.substr(s + 1);
        out.path.resize(s);
        unsigned db = 0;
        const char* const first = out.database.data();
        const char* const last = first + out.database.size();
        const auto [end, ec] = std::from_chars(first, last, db);
        if (out.database.empty() || ec != std::errc{} || end != last) {
          detail::bad_backend_url(url, "redis+sentinel: after the primary's name, the path is a database number (got \"" +
                                           out.database + "\")");
        }
      }
      if (out.path.empty()) {
        detail::bad_backend_url(url, "redis+sentinel: the primary's name is missing (redis+sentinel://host:26379/mymaster)");
      }
    }
    if (out.scheme == backend_scheme::redis_cluster && !out.path.empty()) {
      detail::bad_backend_url(url, "redis+cluster: takes no path (a cluster has one database)");
    }
  } else if (scheme == "rediss" || scheme == "rediss+sentinel" || scheme == "rediss+cluster") {
    detail::bad_backend_url(url, "TLS (" + std::string(scheme) + ":) is not supported by armor's Redis backends");
  } else {
    detail::bad_backend_url(url, "unknown scheme \"" + std::string(scheme) +
                                     "\" (known: memory, sqlite, redis, redis+sentinel, redis+cluster)");
  }
  detail::url_query(url, query, out);
  return out;
}

namespace detail {

/// Reads the query parameters of a backend URL for one backend: each read
/// marks its name as known; finish() refuses any other name, listing the
/// known ones. Values are refused with the parameter's name.
class backend_url_reader {
 public:
  backend_url_reader(const backend_url& u, std::string_view who) : url_(u), who_(who) {}

  [[nodiscard]] std::optional<std::string_view> text(std::string_view name) {
    known_.emplace_back(name);
    return url_.param(name);
  }

  [[nodiscard]] std::optional<std::int64_t> integer(std::string_view name, std::int64_t lo, std::int64_t hi) {
    const auto v = text(name);
    if (!v) return std::nullopt;
    std::int64_t n = 0;
    const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
    if (ec != std::errc{} || end != v->data() + v->size() || n < lo || n > hi) {
      fail(name, *v, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return n;
  }

  [[nodiscard]] std::optional<double> number(std::string_view name) {
    const auto v = text(name);
    if (!v) return std::nullopt;
    double d = 0;
    const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), d);
    if (ec != std::errc{} || end != v->data() + v->size()) fail(name, *v, "a number");
    return d;
  }

  [[nodiscard]] std::optional<bool> boolean(std::string_view name) {
    const auto v = text(name);
    if (!v) return std::nullopt;
    if (*v == "true" || *v == "1" || *v == "yes") return true;
    if (*v == "false" || *v == "0" || *v == "no") return false;
    fail(name, *v, "true or false");
  }

  /// A duration with its unit: 250ms, 5s, 2m (or 2min), 1h (no unit is an error).
  [[nodiscard]] std::optional<std::chrono::milliseconds> millis(std::string_view name) {
    const auto v = text(name);
    if (!v) return std::nullopt;
    std::int64_t n = 0;
    const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
    const std::string_view unit(end, static_cast<std::size_t>(v->data() + v->size() - end));
    std::int64_t ms_per = 0;
    if (unit == "ms") {
      ms_per = 1;
    } else if (unit == "s") {
      ms_per = 1000;
    } else if (unit == "m" || unit == "min") {
      ms_per = 60'000;
    } else if (unit == "h") {
      ms_per = 3'600'000;
    }
    constexpr std::int64_t most = std::int64_t{1} << 40;  // 34 years of milliseconds
    if (ec != std::errc{} || end == v->data() || ms_per == 0 || n < 0 || n > most / ms_per) {
      fail(name, *v, "a duration with a unit: ms, s, m or h (250ms, 5s)");
    }
    return std::chrono::milliseconds{n * ms_per};
  }

  /// Refuses the parameters nobody read.
  void finish() const {
    for (const auto& [k, v] : url_.params) {
      bool known = false;
      for (const auto& n : known_) known = known || n == k;
      if (known) continue;
      std::string list;
      for (const auto& n : known_) list += (list.empty() ? "" : ", ") + n;
      invalid_config(std::string(who_) + ": unknown query parameter \"" + k + "\" (known: " + list + ")");
    }
  }

  [[noreturn]] void fail(std::string_view name, std::string_view value, const std::string& expected) const {
    invalid_config(std::string(who_) + ": query parameter " + std::string(name) + "=\"" + std::string(value) +
                   "\": " + expected + " was expected");
  }

 private:
  const backend_url& url_;
  std::string_view who_;
  std::vector<std::string> known_;
};

}  // namespace detail
}  // namespace armor
