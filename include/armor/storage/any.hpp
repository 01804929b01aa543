// armor/storage/any.hpp: armor::any_quota_storage, one quota storage type
// for every backend, and armor::make_quota_storage, which builds it from a
// backend URL read from configuration. The tracker's type is then the same
// whether the URL says memory:, sqlite: or redis:.
//
//     // QUOTA_URL=memory: on a laptop; redis+cluster://... also needs .backends (below)
//     const char* url = std::getenv("QUOTA_URL");
//     armor::quota_tracker<armor::system_clock, armor::any_quota_storage> quota{
//         {.windows = {armor::quota_window::per_day(10'000)}}, {},
//         armor::make_quota_storage(url != nullptr ? url : "memory:", {.tracker = "openai"})};
//
// memory: is always there. sqlite: and redis: need their integration (its
// header, its library) and their entry in `.backends`:
// armor::sqlite_quota_backend (armor/storage/sqlite.hpp, link armor::sqlite),
// armor::redis_quota_backend (armor/redis/quota_storage.hpp, link
// armor::redis); a URL naming a backend not listed is refused, naming what
// to include and link. Any type meeting armor::quota_storage can be wrapped.
//
// Cost: one virtual call per storage call (the memory backend's few
// nanoseconds more are measured in docs/performance.md). Thread-safety: that
// of the storage inside. A tracker's reconfigure() reaches the storage inside
// (memory, SQLite, Redis take limits per call). Details: docs/backend_urls.md.
#pragma once

#include <armor/error.hpp>
#include <armor/storage/backend_url.hpp>
#include <armor/storage/memory.hpp>
#include <armor/storage/quota_storage.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace armor {

namespace detail {

/// The calls of a quota storage, behind one virtual table.
class any_quota_backend {
 public:
  any_quota_backend() = default;
  any_quota_backend(const any_quota_backend&) = delete;
  any_quota_backend& operator=(const any_quota_backend&) = delete;
  virtual ~any_quota_backend() = default;

  virtual void bind(std::span<const quota_window_layout> layouts) = 0;
  virtual quota_consumption try_consume(const quota_stamp& at, std::int64_t n, quota_deadline until) noexcept = 0;
  /// Against `limits` (quota_tracker::reconfigure) when the storage inside
  /// takes limits per call (takes_limits()); against those bound otherwise.
  virtual quota_consumption try_consume(const quota_stamp& at, std::int64_t n, quota_deadline until,
                                        const quota_values& limits) noexcept = 0;
  /// Whether the storage inside takes limits per call (memory, SQLite, Redis).
  virtual bool takes_limits() const noexcept = 0;
  virtual quota_consumption charge(const quota_stamp& at, std::int64_t n) noexcept = 0;
  virtual void release(const quota_stamp& at, std::int64_t n) noexcept = 0;
  virtual std::int64_t read(std::size_t w, std::int64_t i, std::span<std::int64_t> out,
                            quota_deadline until) const = 0;
  virtual std::size_t claim_alerts(std::size_t w, std::int64_t period, std::size_t fired) noexcept = 0;
  virtual void rearm_alerts(std::size_t w, std::int64_t period, std::size_t fired) noexcept = 0;
  virtual std::unique_ptr<any_quota_backend> for_key(std::string_view key) const = 0;
  /// The storage inside if its type's tag is `tag`, else nullptr.
  virtual void* target(const void* tag) noexcept = 0;
};

/// One address per storage type (for any_quota_storage::target).
template <class S>
inline constexpr char any_quota_tag = 0;

/// A storage of type S behind any_quota_backend. Calls S's deadline
/// overloads, alerts and for_key when S has them; a call S may throw from
/// where the interface may not answers unavailable instead.
template <class S>
class any_quota_model final : public any_quota_backend {
 public:
  explicit any_quota_model(S s) : s_(std::move(s)) {}

  void bind(std::span<const quota_window_layout> layouts) override { s_.bind(layouts); }

  quota_consumption try_consume(const quota_stamp& at, std::int64_t n, quota_deadline until) noexcept override {
    return quietly([&] {
      if constexpr (deadline_quota_storage<S>) {
        return s_.try_consume(at, n, until);
      } else {
        (void)until;
        return s_.try_consume(at, n);
      }
    });
  }
  quota_consumption try_consume(const quota_stamp& at, std::int64_t n, quota_deadline until,
                                const quota_values& limits) noexcept override {
    if constexpr (limits_deadline_quota_storage<S>) {
      return s_.try_consume(at, n, until, limits);
    } else if constexpr (limits_quota_storage<S>) {
      (void)until;
      return s_.try_consume(at, n, limits);
    } else {
      // Its limits are those bound: quota_tracker::reconfigure refuses to
      // change them (takes_limits() is false), so `limits` are those.
      (void)limits;
      return try_consume(at, n, until);
    }
  }
  bool takes_limits() const noexcept override {
    return limits_deadline_quota_storage<S> || limits_quota_storage<S>;
  }
  quota_consumption charge(const quota_stamp& at, std::int64_t n) noexcept override {
    return quietly([&] { return s_.charge(at, n); });
  }
  void release(const quota_stamp& at, std::int64_t n) noexcept override { s_.release(at, n); }
  std::int64_t read(std::size_t w, std::int64_t i, std::span<std::int64_t> out,
                    quota_deadline until) const override {
    if constexpr (deadline_quota_storage<S>) {
      return s_.read(w, i, out, until);
    } else {
      (void)until;
      return s_.read(w, i, out);
    }
  }
  std::size_t claim_alerts(std::size_t w, std::int64_t period, std::size_t fired) noexcept override {
    if constexpr (alert_quota_storage<S>) {
      return s_.claim_alerts(w, period, fired);
    } else {
      // Nothing recorded elsewhere: the tracker's own alert state decides,
      // as when its storage keeps none.
      (void)w, (void)period, (void)fired;
      return 0;
    }
  }
  void rearm_alerts(std::size_t w, std::int64_t period, std::size_t fired) noexcept override {
    if constexpr (alert_quota_storage<S>) {
      s_.rearm_alerts(w, period, fired);
    } else {
      (void)w, (void)period, (void)fired;
    }
  }
  std::unique_ptr<any_quota_backend> for_key(std::string_view key) const override {
    if constexpr (keyed_quota_storage<S>) {
      return std::make_unique<any_quota_model>(s_.for_key(key));
    } else if constexpr (std::default_initializable<S>) {
      // As armor::keyed does for such a storage: each key's own, fresh.
      (void)key;
      return std::make_unique<any_quota_model>(S{});
    } else {
      (void)key;
      invalid_config("armor::any_quota_storage::for_key: the storage inside makes no storage per key "
                     "(it meets neither armor::keyed_quota_storage nor std::default_initializable)");
    }
  }
  void* target(const void* tag) noexcept override {
    return tag == static_cast<const void*>(&any_quota_tag<S>) ? static_cast<void*>(&s_) : nullptr;
  }

 private:
  template <class F>
  static quota_consumption quietly(F&& f) noexcept {
    if constexpr (noexcept(f())) {
      return f();
    } else {
      try {
        return f();
      } catch (...) {
        quota_consumption r;
        r.status = quota_storage_status::unavailable;
        return r;
      }
    }
  }

  S s_;
};

}  // namespace detail

/// A quota storage holding any other (see the top of this header): the
/// memory backend when default-constructed, or the storage given. Meets
/// quota_storage, deadline_quota_storage (the deadline reaches a storage
/// that takes one), alert_quota_storage (for one that keeps alerts; else
/// the tracker's own alert state decides, as without) and
/// keyed_quota_storage (a keyed storage's for_key; else a fresh one per
/// key, as armor::keyed does). Move-only; a moved-from one may only be
/// destroyed or assigned to. Every call is one virtual call to the storage
/// inside, whose thread-safety and exceptions it keeps.
class any_quota_storage {
 public:
  /// The memory backend (armor::memory_quota_storage).
  any_quota_storage() : any_quota_storage(memory_quota_storage{}) {}

  /// Wraps `s` (moved into one allocation, made here).
  template <class S>
    requires(!std::same_as<std::remove_cvref_t<S>, any_quota_storage> && quota_storage<std::remove_cvref_t<S>>)
  explicit any_quota_storage(S&& s)
      : backend_(std::make_unique<detail::any_quota_model<std::remove_cvref_t<S>>>(std::forward<S>(s))) {}

  any_quota_storage(any_quota_storage&&) noexcept = default;
  any_quota_storage& operator=(any_quota_storage&&) noexcept = default;
  any_quota_storage(const any_quota_storage&) = delete;
  any_quota_storage& operator=(const any_quota_storage&) = delete;
  ~any_quota_storage() = default;

  void bind(std::span<const quota_window_layout> layouts) { backend_->bind(layouts); }
  [[nodiscard]] quota_consumption try_consume(const quota_stamp& at, std::int64_t n) noexcept {
    return backend_->try_consume(at, n, quota_deadline::max());
  }
  [[nodiscard]] quota_consumption try_consume(const quota_stamp& at, std::int64_t n, quota_deadline until) noexcept {
    return backend_->try_consume(at, n, until);
  }
  /// The same, against `limits` (one per window) instead of the limits
  /// bound: how a quota_tracker on this storage decides with the limits of
  /// its last reconfigure(). A storage inside that takes no limits per call
  /// is checked against its own (see takes_limits()).
  [[nodiscard]] quota_consumption try_consume(const quota_stamp& at, std::int64_t n, quota_deadline until,
                                              const quota_values& limits) noexcept {
    return backend_->try_consume(at, n, until, limits);
  }
  /// Whether the storage inside takes the limits per call, as the memory,
  /// SQLite and Redis backends do: only then can a tracker on this storage
  /// change its limits at run time (quota_tracker::reconfigure refuses
  /// otherwise, saying so).
  [[nodiscard]] bool takes_limits() const noexcept { return backend_ && backend_->takes_limits(); }
  [[nodiscard]] quota_consumption charge(const quota_stamp& at, std::int64_t n) noexcept {
    return backend_->charge(at, n);
  }
  void release(const quota_stamp& at, std::int64_t n) noexcept {
    if (backend_) backend_->release(at, n);
  }
  /// May throw what the storage inside throws (SQLite, Redis: storage_unavailable).
  [[nodiscard]] std::int64_t read(std::size_t w, std::int64_t i, std::span<std::int64_t> out) const {
    return backend_->read(w, i, out, quota_deadline::max());
  }
  [[nodiscard]] std::int64_t read(std::size_t w, std::int64_t i, std::span<std::int64_t> out,
                                  quota_deadline until) const {
    return backend_->read(w, i, out, until);
  }
  [[nodiscard]] std::size_t claim_alerts(std::size_t w, std::int64_t period, std::size_t fired) noexcept {
    return backend_ ? backend_->claim_alerts(w, period, fired) : 0;
  }
  void rearm_alerts(std::size_t w, std::int64_t period, std::size_t fired) noexcept {
    if (backend_) backend_->rearm_alerts(w, period, fired);
  }
  /// For armor::keyed: the storage inside's for_key(key), wrapped (a fresh
  /// memory storage for the memory backend).
  [[nodiscard]] any_quota_storage for_key(std::string_view key) const {
    return any_quota_storage(backend_->for_key(key));
  }

  /// The storage inside if it is an S (to read redis_quota_storage::stats(),
  /// to flush an sqlite_quota_storage), else nullptr.
  template <class S>
  [[nodiscard]] S* target() noexcept {
    return backend_ ? static_cast<S*>(backend_->target(&detail::any_quota_tag<S>)) : nullptr;
  }
  template <class S>
  [[nodiscard]] const S* target() const noexcept {
    return backend_ ? static_cast<const S*>(backend_->target(&detail::any_quota_tag<S>)) : nullptr;
  }

 private:
  explicit any_quota_storage(std::unique_ptr<detail::any_quota_backend> b) noexcept : backend_(std::move(b)) {}

  std::unique_ptr<detail::any_quota_backend> backend_;
};

static_assert(deadline_quota_storage<any_quota_storage>);
static_assert(alert_quota_storage<any_quota_storage>);
static_assert(keyed_quota_storage<any_quota_storage>);
static_assert(detail::limits_deadline_quota_storage<any_quota_storage>);

/// A backend make_quota_storage can build beyond memory:, given by the
/// header of its integration: armor::sqlite_quota_backend,
/// armor::redis_quota_backend.
struct quota_backend {
  std::string_view name;  ///< for messages: "sqlite"
  /// Whether it builds storages for URLs of this scheme.
  bool (*serves)(backend_scheme scheme) noexcept = nullptr;
  /// Builds one from the URL; `tracker` is the name to use when the URL
  /// names none.
  any_quota_storage (*make)(std::string_view url, std::string_view tracker) = nullptr;
};

/// What make_quota_storage takes besides the URL. An aggregate:
/// `{.tracker = "openai", .backends = {armor::redis_quota_backend}}`.
struct any_quota_storage_options {
  /// The name counts are kept under (sqlite:, redis:) when the URL has no
  /// `tracker=`; not empty. Several trackers can share one URL this way.
  std::string tracker = "default";
  /// The backends this program is built with, beyond memory: (always there).
  std::vector<quota_backend> backends{};
};

/// Builds the storage a backend URL names (docs/backend_urls.md): memory:
/// here; sqlite:, redis:, redis+sentinel:, redis+cluster: through the
/// backend in `options.backends` that serves the scheme. Throws
/// armor::error(errc::invalid_argument) for a malformed URL (naming the
/// part), a backend not listed (naming the scheme and what to include and
/// link), a bad parameter or option (naming it). Each call builds its own
/// storage (Redis: its own connection pool).
[[nodiscard]] inline any_quota_storage make_quota_storage(std::string_view url,
                                                          const any_quota_storage_options& options = {}) {
  constexpr std::string_view who = "armor::make_quota_storage";
  if (options.tracker.empty()) detail::invalid_config(std::string(who) + ": tracker must not be empty");
  for (const quota_backend& b : options.backends) {
    if (b.serves == nullptr || b.make == nullptr) {
      detail::invalid_config(std::string(who) + ": backends: an entry without serves or make (use armor::sqlite_quota_backend, "
                                        "armor::redis_quota_backend)");
    }
  }
  const backend_url u = parse_backend_url(url);
  if (u.scheme == backend_scheme::memory) {
    detail::backend_url_reader r(u, "armor::make_quota_storage (memory:)");
    (void)r.text("tracker");  // accepted, as by every backend; memory counts are this tracker's anyway
    r.finish();
    return any_quota_storage{};
  }
  for (const quota_backend& b : options.backends) {
    if (b.serves(u.scheme)) return b.make(url, options.tracker);
  }
  const bool sqlite = u.scheme == backend_scheme::sqlite;
  detail::invalid_config(std::string(who) + ": the " + std::string(to_string(u.scheme)) +
                 " backend is not among .backends: include " +
                 (sqlite ? "<armor/storage/sqlite.hpp>, link armor::sqlite (or -lsqlite3) and list "
                           "armor::sqlite_quota_backend"
                         : "<armor/redis/quota_storage.hpp>, link armor::redis (hiredis) and list "
                           "armor::redis_quota_backend") +
                 " in any_quota_storage_options::backends");
}

}  // namespace armor
