// armor/any_token_bucket.hpp: armor::any_token_bucket, one token bucket type
// whatever holds its state, and armor::make_token_bucket, which builds it
// from a backend URL read from configuration: memory: (this process) or
// redis://, redis+sentinel://, redis+cluster:// (every instance naming it).
//
//     using namespace std::chrono_literals;
//     // RATE_URL=memory: on a laptop; redis://... also needs .backends (below)
//     const char* url = std::getenv("RATE_URL");
//     armor::any_token_bucket<> upstream = armor::make_token_bucket(
//         url != nullptr ? url : "memory:", {.rate = {100, 1s}, .burst = 20}, {.name = "upstream"});
//     auto p = armor::pipeline{std::ref(upstream)};  // call_options::key: one bucket per key
//     auto r = p.try_execute([] { return 1; }, {.key = "10.0.0.7"});
//
// Redis URLs need armor::redis_token_bucket_backend<Clock> (armor/redis/
// token_bucket.hpp, link armor::redis) in .backends; sqlite: is refused (a
// commit per decision, for state that lives seconds). Decisions are
// token_bucket_decision<>; no backend waits for tokens (max_wait must be 0)
// or gives them back (permit: no_permit). Cost: one virtual call per
// decision; memory: allocates nothing per call once a key has its bucket.
// Thread-safety: every member but moving. Details: docs/redis.md#one-bucket-type-for-every-url.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/detail/config.hpp>
#include <armor/error.hpp>
#include <armor/keyed.hpp>
#include <armor/policy.hpp>
#include <armor/rate.hpp>
#include <armor/storage/backend_url.hpp>
#include <armor/token_bucket.hpp>
#include <armor/verdict.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace armor {

template <class Clock>
class any_token_bucket;

namespace detail {

/// The calls of a token bucket, behind one virtual table. `burst` 0 and
/// `r` nullopt in change(): keep that part.
template <class Clock>
class any_bucket_backend {
 public:
  any_bucket_backend() = default;
  any_bucket_backend(const any_bucket_backend&) = delete;
  any_bucket_backend& operator=(const any_bucket_backend&) = delete;
  virtual ~any_bucket_backend() = default;

  virtual token_bucket_decision<> try_acquire(std::string_view key, std::int64_t n, timestamp now) noexcept = 0;
  virtual admission<no_permit> admit(context& ctx) noexcept = 0;
  virtual void change(std::optional<armor::rate> r, std::int64_t burst, timestamp now) = 0;
  [[nodiscard]] virtual armor::rate rate() const noexcept = 0;
  [[nodiscard]] virtual std::int64_t burst() const noexcept = 0;
  /// The bucket inside if its type's tag is `tag`, else nullptr.
  virtual void* target(const void* tag) noexcept = 0;
};

/// One address per bucket type (for any_token_bucket::target).
template <class B>
inline constexpr char any_bucket_tag = 0;

/// A refused decision as an admission: the mapping armor::redis_token_bucket's
/// admit() uses, so that every backend rejects alike.
[[nodiscard]] inline admission<no_permit> any_bucket_admission(const token_bucket_decision<>& d) noexcept {
  if (d) return admission<no_permit>::admit();
  const std::error_code code = d.code();
  if (code == errc::rate_limited) return admission<no_permit>::reject(code, d.retry_after(), true);
  const bool retryable = code == errc::storage_unavailable || code == errc::deadline_exceeded;
  return admission<no_permit>::reject(code, std::nullopt, retryable);
}

/// What the memory backend keeps per key: an unpadded token_bucket that
/// armor::keyed can reconfigure (set_rate, keeping its tokens), so that a
/// rate change reaches every key held and every key made later.
template <class Clock>
class any_bucket_key {
 public:
  using clock_type = Clock;
  using options_type = token_bucket_options;
  using permit_type = token_bucket_permit;

  any_bucket_key(const token_bucket_options& o, Clock clock) : bucket_(o, std::move(clock)) {}

  [[nodiscard]] admission<token_bucket_permit> admit(context& ctx) noexcept { return bucket_.admit(ctx); }
  void settle(context& ctx, token_bucket_permit p, const verdict& v) noexcept { bucket_.settle(ctx, std::move(p), v); }
  [[nodiscard]] bool idle(timestamp now) const noexcept { return bucket_.idle(now); }
  void reconfigure(const token_bucket_options& o) { bucket_.set_rate(o.rate, o.burst); }
  [[nodiscard]] token_bucket<Clock, false>& bucket() noexcept { return bucket_; }

 private:
  token_bucket<Clock, false> bucket_;
};

/// memory: a token_bucket for calls without a key, armor::keyed for the rest.
template <class Clock>
class any_bucket_memory final : public any_bucket_backend<Clock> {
 public:
  any_bucket_memory(const token_bucket_options& o, const keyed_options& keys, const Clock& clock)
      : cost_(o.cost), options_(o), bucket_(o, clock), keys_(o, keys, clock) {}

  token_bucket_decision<> try_acquire(std::string_view key, std::int64_t n, timestamp now) noexcept override {
    if (key.empty()) return bucket_.try_acquire(n, now);
    try {
      auto h = keys_.get(key, now);  // allocates only for a key not held
      return h->bucket().try_acquire(n, now);
    } catch (...) {  // out of memory for a new key's bucket
      const armor::rate r = bucket_.rate();
      return bucket_decision_access::refused(errc::storage_unavailable, {r.count, r.per.count(), bucket_.burst()}, n);
    }
  }
  admission<no_permit> admit(context& ctx) noexcept override {
    const std::int64_t n = ctx.cost(cost_);
    if (n == 0) return admission<no_permit>::admit();
    return any_bucket_admission(try_acquire(ctx.key(), n, ctx.now()));
  }
  void change(std::optional<armor::rate> r, std::int64_t burst, timestamp now) override {
    const std::lock_guard<std::mutex> lock(change_);
    token_bucket_options next = options_;
    if (r) next.rate = *r;
    if (burst != 0) next.burst = burst;
    keys_.reconfigure(next);  // checks first (throws naming the option, changing nothing)
    bucket_.set_rate(next.rate, next.burst, now);
    options_ = next;
  }
  [[nodiscard]] armor::rate rate() const noexcept override { return bucket_.rate(); }
  [[nodiscard]] std::int64_t burst() const noexcept override { return bucket_.burst(); }
  void* target(const void* tag) noexcept override {
    return tag == static_cast<const void*>(&any_bucket_tag<token_bucket<Clock>>) ? static_cast<void*>(&bucket_)
                                                                                 : nullptr;
  }

 private:
  const cost_source cost_;        // read by admit(); never changed
  token_bucket_options options_;  // as changed; read and written only under change_
  token_bucket<Clock> bucket_;
  keyed<any_bucket_key<Clock>, token_bucket_options, Clock> keys_;
  std::mutex change_;
};

/// Any other bucket B: one that takes keys itself (armor::redis_token_bucket).
template <class B, class Clock>
class any_bucket_model final : public any_bucket_backend<Clock> {
 public:
  explicit any_bucket_model(B b) : b_(std::move(b)) {}

  token_bucket_decision<> try_acquire(std::string_view key, std::int64_t n, timestamp now) noexcept override {
    return b_.try_acquire(key, n, now);
  }
  admission<no_permit> admit(context& ctx) noexcept override { return b_.admit(ctx); }
  void change(std::optional<armor::rate> r, std::int64_t burst, timestamp now) override {
    if (r && burst != 0) {
      b_.set_rate(*r, burst, now);
    } else if (r) {
      b_.set_rate(*r, now);
    } else {
      b_.set_burst(burst, now);
    }
  }
  [[nodiscard]] armor::rate rate() const noexcept override { return b_.rate(); }
  [[nodiscard]] std::int64_t burst() const noexcept override { return b_.burst(); }
  void* target(const void* tag) noexcept override {
    return tag == static_cast<const void*>(&any_bucket_tag<B>) ? static_cast<void*>(&b_) : nullptr;
  }

 private:
  B b_;
};

}  // namespace detail

/// What any_token_bucket can hold besides its memory backend: a bucket
/// that takes a key itself, never waits and answers token_bucket_decision<>
/// (armor::redis_token_bucket<Clock>).
template <class B, class Clock>
concept any_token_bucket_backend =
    std::move_constructible<B> && std::same_as<typename B::clock_type, Clock> &&
    std::same_as<typename B::permit_type, no_permit> &&
    requires(B& b, std::string_view key, std::int64_t n, timestamp now, context& ctx, const armor::rate& r) {
      { b.try_acquire(key, n, now) } noexcept -> std::same_as<token_bucket_decision<>>;
      { b.admit(ctx) } noexcept -> std::same_as<admission<no_permit>>;
      b.set_rate(r, n, now);
      b.set_rate(r, now);
      b.set_burst(n, now);
      { std::as_const(b).rate() } noexcept -> std::same_as<armor::rate>;
      { std::as_const(b).burst() } noexcept -> std::same_as<std::int64_t>;
    };

/// A token bucket whose state lives where its backend keeps it (see the top
/// of this header), and an armor::policy. Built by make_token_bucket from a
/// URL, from token_bucket_options (memory), or around a bucket B meeting
/// any_token_bucket_backend. Decides as the bucket inside does (memory: as
/// armor::token_bucket with max_wait 0; a key's bucket as
/// keyed<token_bucket>). Every member is thread-safe except moving; a
/// moved-from one may only be destroyed or assigned to.
template <class Clock = steady_clock>
class any_token_bucket {
  static_assert(armor::clock<Clock>, "armor::any_token_bucket: Clock must have now() returning its time_point");

 public:
  using clock_type = Clock;
  using options_type = token_bucket_options;
  /// Tokens are spent when admitted, by every backend.
  using permit_type = no_permit;

  /// A memory bucket (per key: one keyed bucket each, at most
  /// keys.max_keys). Throws armor::error(invalid_argument) for options
  /// token_bucket refuses, a max_wait other than 0, bad keyed_options.
  explicit any_token_bucket(const token_bucket_options& options, const keyed_options& keys = {},
                            Clock clock = Clock{})
      : clock_(clock), backend_(std::make_unique<detail::any_bucket_memory<Clock>>(checked(options), keys, clock)) {}

  /// Wraps `b` (moved into one allocation, made here).
  template <class B>
    requires(!std::same_as<std::remove_cvref_t<B>, any_token_bucket> &&
             any_token_bucket_backend<std::remove_cvref_t<B>, Clock>)
  explicit any_token_bucket(B&& b)
      : clock_(b.clock()),
        backend_(std::make_unique<detail::any_bucket_model<std::remove_cvref_t<B>, Clock>>(std::forward<B>(b))) {}

  any_token_bucket(any_token_bucket&&) noexcept = default;
  any_token_bucket& operator=(any_token_bucket&&) noexcept = default;
  any_token_bucket(const any_token_bucket&) = delete;
  any_token_bucket& operator=(const any_token_bucket&) = delete;
  ~any_token_bucket() = default;

  /// Takes n tokens now (reads the clock), or none. Never waits. Refused
  /// with code() rate_limited (and the exact retry_after()),
  /// request_too_large, invalid_argument, or what the backend adds (Redis:
  /// storage_unavailable).
  [[nodiscard]] token_bucket_decision<> try_acquire(std::int64_t n = 1) noexcept(
      noexcept(std::declval<const Clock&>().now())) {
    return try_acquire(n, to_timestamp(clock_.now()));
  }
  /// Takes n tokens at `now` (a reading of this bucket's clock).
  [[nodiscard]] token_bucket_decision<> try_acquire(std::int64_t n, timestamp now) noexcept {
    return backend_->try_acquire({}, n, now);
  }
  /// Takes n tokens from `key`'s bucket now.
  [[nodiscard]] token_bucket_decision<> try_acquire(std::string_view key, std::int64_t n = 1) noexcept(
      noexcept(std::declval<const Clock&>().now())) {
    return try_acquire(key, n, to_timestamp(clock_.now()));
  }
  /// Takes n tokens from `key`'s bucket at `now` (an empty key: the bucket without one).
  [[nodiscard]] token_bucket_decision<> try_acquire(std::string_view key, std::int64_t n, timestamp now) noexcept {
    return backend_->try_acquire(key, n, now);
  }

  /// Policy protocol: takes the call's cost (token_bucket_options::cost)
  /// from the bucket of ctx.key() at ctx.now(). Rejections as
  /// armor::redis_token_bucket's: rate_limited (with retry_after),
  /// storage_unavailable and deadline_exceeded are retryable;
  /// request_too_large and invalid_argument are not.
  [[nodiscard]] admission<no_permit> admit(context& ctx) noexcept { return backend_->admit(ctx); }
  /// Policy protocol: nothing to do (the tokens stay spent).
  void settle(context&, no_permit, const verdict&) noexcept {}

  /// Changes rate and burst, keeping the tokens (token_bucket::set_rate's
  /// rule), for the bucket without a key and every key's (memory: each
  /// key held now, and those made later; Redis: for every instance). Throws
  /// armor::error(invalid_argument) for values the constructor refuses,
  /// and what the backend throws (Redis: storage_unavailable).
  void set_rate(const armor::rate& r, std::int64_t burst) { set_rate(r, burst, to_timestamp(clock_.now())); }
  void set_rate(const armor::rate& r, std::int64_t burst, timestamp now) {
    if (burst < 1) bad_burst("set_rate", burst);
    backend_->change(r, burst, now);
  }
  /// Changes the rate, keeping the burst and the tokens.
  void set_rate(const armor::rate& r) { set_rate(r, to_timestamp(clock_.now())); }
  void set_rate(const armor::rate& r, timestamp now) { backend_->change(r, 0, now); }
  /// Changes the burst, keeping the rate and the tokens.
  void set_burst(std::int64_t burst) { set_burst(burst, to_timestamp(clock_.now())); }
  void set_burst(std::int64_t burst, timestamp now) {
    if (burst < 1) bad_burst("set_burst", burst);
    backend_->change(std::nullopt, burst, now);
  }

  /// The current rate (Redis: of its latest answer), in lowest terms.
  [[nodiscard]] armor::rate rate() const noexcept { return backend_->rate(); }
  /// The current burst (Redis: of its latest answer).
  [[nodiscard]] std::int64_t burst() const noexcept { return backend_->burst(); }

  /// The bucket inside if it is a B, else nullptr: memory's
  /// token_bucket<Clock> (the one without a key: its stats()), or
  /// redis_token_bucket<Clock> (its stats(), return_lease()).
  template <class B>
  [[nodiscard]] B* target() noexcept {
    return backend_ ? static_cast<B*>(backend_->target(&detail::any_bucket_tag<B>)) : nullptr;
  }
  template <class B>
  [[nodiscard]] const B* target() const noexcept {
    return backend_ ? static_cast<const B*>(backend_->target(&detail::any_bucket_tag<B>)) : nullptr;
  }

  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  static const token_bucket_options& checked(const token_bucket_options& o) {
    if (o.max_wait.count() != 0) {
      detail::invalid_config("armor::any_token_bucket: max_wait must be 0 (got " + std::to_string(o.max_wait.count()) +
                             " ns): no backend makes a call wait for its tokens, so that a URL change "
                             "changes no behaviour");
    }
    return o;
  }
  [[noreturn]] static void bad_burst(const char* who, std::int64_t burst) {
    detail::invalid_config(std::string("armor::any_token_bucket::") + who + ": burst must be at least 1 (got " +
                           std::to_string(burst) + ")");
  }

  [[no_unique_address]] Clock clock_;
  std::unique_ptr<detail::any_bucket_backend<Clock>> backend_;
};

/// A backend make_token_bucket can build beyond memory:, given by the
/// header of its integration: armor::redis_token_bucket_backend<Clock>.
template <class Clock = steady_clock>
struct token_bucket_backend {
  std::string_view name;  ///< for messages: "redis"
  /// Whether it builds buckets for URLs of this scheme.
  bool (*serves)(backend_scheme scheme) noexcept = nullptr;
  /// Builds one from the URL; `name` is the limiter's name to use when the
  /// URL names none.
  any_token_bucket<Clock> (*make)(std::string_view url, const token_bucket_options& bucket, std::string_view name,
                                  const Clock& clock) = nullptr;
};

/// What make_token_bucket takes besides the URL and the bucket's options.
/// An aggregate: `{.name = "upstream", .backends = {armor::redis_token_bucket_backend<>}}`.
template <class Clock = steady_clock>
struct any_token_bucket_options {
  /// The limiter's name: buckets (in any process) built from the same
  /// shared URL with the same name share their tokens (a URL's `name=`
  /// overrides it). Not empty, no '{' or '}', whatever the URL.
  std::string name = "default";
  /// memory: the per-key map (call_options::key): at most max_keys buckets
  /// (the URL's `max_keys=` overrides it). Redis keeps keys in Redis.
  keyed_options keys{};
  /// The backends this program is built with, beyond memory: (always there).
  std::vector<token_bucket_backend<Clock>> backends{};
};

/// Builds the bucket a backend URL names (docs/redis.md#one-bucket-type-for-every-url):
/// memory: here (parameters name, max_keys); redis:, redis+sentinel:,
/// redis+cluster: through the backend in `options.backends` that serves
/// the scheme. Throws armor::error(errc::invalid_argument) for a malformed
/// URL (naming the part), sqlite: (no SQLite bucket), a backend not listed
/// (naming the scheme and what to include and link), a bad parameter or
/// option (naming it), a max_wait other than 0. Each call builds its own
/// bucket (Redis: its own connection pool).
template <class Clock = steady_clock>
[[nodiscard]] any_token_bucket<Clock> make_token_bucket(std::string_view url, const token_bucket_options& bucket,
                                                        const any_token_bucket_options<Clock>& options = {},
                                                        Clock clock = Clock{}) {
  const std::string who = "armor::make_token_bucket";
  if (options.name.empty()) detail::invalid_config(who + ": name must not be empty");
  if (options.name.find_first_of("{}") != std::string::npos) {
    detail::invalid_config(who + ": name must not contain '{' or '}' (got \"" + options.name + "\")");
  }
  for (const token_bucket_backend<Clock>& b : options.backends) {
    if (b.serves == nullptr || b.make == nullptr) {
      detail::invalid_config(who + ": backends: an entry without serves or make (use armor::redis_token_bucket_backend<Clock>)");
    }
  }
  const backend_url u = parse_backend_url(url);
  if (u.scheme == backend_scheme::memory) {
    detail::backend_url_reader r(u, "armor::make_token_bucket (memory:)");
    (void)r.text("name");  // accepted, as by every backend; a memory bucket is its own anyway
    keyed_options keys = options.keys;
    if (const auto v = r.integer("max_keys", 1, std::numeric_limits<std::int64_t>::max())) {
      keys.max_keys = static_cast<std::size_t>(*v);
    }
    r.finish();
    return any_token_bucket<Clock>(bucket, keys, std::move(clock));
  }
  if (u.scheme == backend_scheme::sqlite) {
    detail::invalid_config(who + ": scheme sqlite: has no token bucket: a bucket's state lives for seconds and "
                                 "changes on every call, which SQLite would make a commit per decision; use memory: "
                                 "(one process) or redis:// (several processes or hosts)");
  }
  for (const token_bucket_backend<Clock>& b : options.backends) {
    if (b.serves(u.scheme)) return b.make(url, bucket, options.name, clock);
  }
  detail::invalid_config(who + ": the " + std::string(to_string(u.scheme)) +
                         " backend is not among .backends: include <armor/redis/token_bucket.hpp>, link armor::redis "
                         "(hiredis) and list armor::redis_token_bucket_backend<Clock> in "
                         "any_token_bucket_options::backends");
}

}  // namespace armor
