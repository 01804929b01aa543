// fuzz_redis_reply.cpp: armor's readers of Redis replies
// (detail/redis_reply.hpp) on whatever hiredis' own reader makes of the
// input (RESP2: hiredis 0.14 on Debian 12 reads no RESP3). Every reply, and
// every element inside one, goes through every reader, with a few choices
// of what the call asked for. Properties: a reader returns either nothing or
// values within the bounds its header documents (a bucket status 0, 1 or 2;
// tokens granted within [n, want] and the burst; counts within [0, cap];
// slices within the scripts' range; slot ranges first <= last < 16384;
// ports in [1, 65535]; hosts inside the reply), the lease arithmetic the
// Redis bucket then does cannot overflow, and the token bucket decision
// built from an answer is consistent (a denial has a positive retry_after,
// remaining within [0, burst], no wait). Linked with hiredis.
#include <armor/detail/redis_reply.hpp>
#include <armor/redis/token_bucket.hpp>

#include "fuzz_common.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace {

namespace d = armor::detail;
using armor_fuzz::i128;

constexpr std::int64_t slice_max = std::int64_t{1} << 53;

// hiredis 0.14 allocates an array's element vector when it reads "*<n>",
// with no limit: an input declaring a huge array only measures malloc.
// Inputs with any '*' followed by a count above 4096 are skipped.
bool small_arrays(std::string_view s) {
  for (std::size_t i = s.find('*'); i != std::string_view::npos; i = s.find('*', i + 1)) {
    std::size_t j = i + 1;
    std::size_t digits = 0;
    std::uint64_t v = 0;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') {
      if (++digits > 6) return false;
      v = v * 10 + static_cast<std::uint64_t>(s[j] - '0');
      ++j;
    }
    if (v > 4096) return false;
  }
  return true;
}

bool inside(std::string_view part, const redisReply* r) {
  if (part.empty()) return true;
  return r != nullptr && r->str != nullptr && part.data() >= r->str && part.data() + part.size() <= r->str + r->len;
}

void check_bucket(const redisReply* r) {
  static constexpr std::array<std::pair<std::int64_t, std::int64_t>, 5> asks{
      {{1, 1}, {1, 4}, {0, 0}, {3, 10}, {5, 5}}};
  for (const auto& [n, want] : asks) {
    const auto a = d::redis_bucket_acquire_reply(r, n, want);
    if (!a) continue;
    const d::bucket_config& c = a->config;
    ARMOR_FUZZ_CHECK(c.count > 0 && c.period > 0 && c.burst > 0);
    ARMOR_FUZZ_CHECK(static_cast<i128>(c.burst) * c.period <= d::redis_bucket_max_span);
    ARMOR_FUZZ_CHECK(a->debt >= 0 && a->debt <= slice_max);
    ARMOR_FUZZ_CHECK(a->status >= 0 && a->status <= 2);
    if (a->status == 0) {
      ARMOR_FUZZ_CHECK(a->granted >= n && a->granted <= std::max(n, want) && a->granted <= c.burst);
      ARMOR_FUZZ_CHECK(a->late <= 0 && a->late >= -slice_max);
      ARMOR_FUZZ_CHECK(a->t >= 0 && a->t <= slice_max);
      // What lease_refill computes from a grant (plain int64 there).
      const std::int64_t left = a->granted - n;
      ARMOR_FUZZ_CHECK(left >= 0 && left <= std::max<std::int64_t>(want - n, 0));
      ARMOR_FUZZ_CHECK(static_cast<i128>(a->granted) * c.period <= d::redis_bucket_max_span);
      const std::int64_t debt = a->debt - left * c.period;
      ARMOR_FUZZ_CHECK(debt >= -d::redis_bucket_max_span);
    } else {
      ARMOR_FUZZ_CHECK(a->granted == 0 && a->q == 0 && a->t == 0);
      ARMOR_FUZZ_CHECK(a->status == 1 ? a->late > 0 && a->late <= slice_max : a->late == 0);
    }
    const auto status = a->status == 0   ? armor::token_bucket_status::granted
                        : a->status == 1 ? armor::token_bucket_status::denied
                                         : armor::token_bucket_status::too_large;
    const auto decision = d::redis_bucket_maker::decision(status, c, n, a->debt, a->late);
    ARMOR_FUZZ_CHECK(static_cast<bool>(decision) == (a->status == 0));
    ARMOR_FUZZ_CHECK(a->status == 1 ? decision.retry_after() > std::chrono::nanoseconds::zero()
                                    : decision.retry_after() >= std::chrono::nanoseconds::zero());
    ARMOR_FUZZ_CHECK(decision.wait() == std::chrono::nanoseconds::zero());  // Redis grants never wait
    ARMOR_FUZZ_CHECK(decision.remaining() >= 0 && decision.remaining() <= c.burst);
    ARMOR_FUZZ_CHECK(decision.reset() >= std::chrono::nanoseconds::zero());
  }
  if (const auto a = d::redis_bucket_configure_reply(r)) {
    ARMOR_FUZZ_CHECK(a->config.count > 0 && a->config.period > 0 && a->config.burst > 0);
    ARMOR_FUZZ_CHECK(d::redis_bucket_config_ok(a->config) != a->refused);
  }
  if (const auto back = d::redis_bucket_return_reply(r)) {
    ARMOR_FUZZ_CHECK(r->type == REDIS_REPLY_INTEGER && r->integer == (*back ? 1 : 0));
  }
}

void check_quota(const redisReply* r) {
  std::vector<std::size_t> windows{1, 2, d::redis_quota_windows};
  if (r != nullptr && r->type == REDIS_REPLY_ARRAY && r->elements >= 5 && (r->elements - 3) % 2 == 0) {
    windows.push_back((r->elements - 3) / 2);  // the count that fits, if any
  }
  static constexpr std::array<std::pair<std::int64_t, std::int64_t>, 4> asks{{{1, 1}, {1, 8}, {0, 0}, {7, 9}}};
  for (const std::size_t w : windows) {
    for (const auto& [n, want] : asks) {
      for (const bool check : {true, false}) {
        const auto a = d::redis_quota_consume_reply(r, w, n, want, check);
        if (!a) continue;
        ARMOR_FUZZ_CHECK(w >= 1 && w <= d::redis_quota_windows);
        for (std::size_t i = 0; i < d::redis_quota_windows; ++i) {
          const bool counted = a->refused ? i == a->window : i < w;
          if (!counted) {
            ARMOR_FUZZ_CHECK(a->at[i] == 0 && a->used[i] == 0);
            continue;
          }
          ARMOR_FUZZ_CHECK(a->at[i] >= -slice_max && a->at[i] <= slice_max);
          ARMOR_FUZZ_CHECK(a->used[i] >= 0 && a->used[i] <= d::quota_used_cap);
        }
        if (a->refused) {
          ARMOR_FUZZ_CHECK(a->window < w && a->granted == 0);
        } else if (check) {
          ARMOR_FUZZ_CHECK(a->window == 0 && a->granted >= n && a->granted <= std::max(n, want));
        } else {
          ARMOR_FUZZ_CHECK(a->window == 0 && a->granted == std::min(n, d::quota_used_cap));
        }
      }
    }
  }
  std::vector<std::size_t> buckets{0, 3};
  if (r != nullptr && r->type == REDIS_REPLY_ARRAY && r->elements >= 2) buckets.push_back(r->elements - 2);
  for (const std::size_t b : buckets) {
    for (const std::size_t room : {std::size_t{1}, b + 1, b + 3}) {
      std::vector<std::int64_t> out(room, -7);
      const auto slice = d::redis_quota_read_reply(r, b, out);
      if (!slice) {
        ARMOR_FUZZ_CHECK(std::all_of(out.begin(), out.end(), [](std::int64_t v) { return v == -7; }));
        continue;
      }
      ARMOR_FUZZ_CHECK(*slice >= -(std::int64_t{1} << 62) && *slice <= (std::int64_t{1} << 62));
      const std::size_t k = std::min(room, b + 1);
      for (std::size_t j = 0; j < room; ++j) {
        if (j < k) ARMOR_FUZZ_CHECK(out[j] >= 0 && out[j] <= d::quota_used_cap);
        else ARMOR_FUZZ_CHECK(out[j] == -7);
      }
    }
  }
  if (const auto before = d::redis_quota_alert_reply(r)) {
    ARMOR_FUZZ_CHECK(r->type == REDIS_REPLY_INTEGER && r->integer >= 0 &&
                     static_cast<std::uint64_t>(r->integer) == *before);
  }
}

void check_cluster(const redisReply* r) {
  const std::size_t count = r != nullptr && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
  for (std::size_t i = 0; i <= count; ++i) {
    const auto range = d::redis_cluster_slots_entry(r, i);
    if (!range) continue;
    ARMOR_FUZZ_CHECK(i < count);
    ARMOR_FUZZ_CHECK(range->first <= range->last && range->last < d::redis_slot_count);
    ARMOR_FUZZ_CHECK(range->port >= 1);
    ARMOR_FUZZ_CHECK(range->host != "?");
    ARMOR_FUZZ_CHECK(inside(range->host, r->element[i]->element[2]->element[0]));
  }
  const d::redis_redirect to = d::redis_redirect_of(r);
  switch (to.kind) {
    case d::redis_redirect_kind::none:
    case d::redis_redirect_kind::try_again:
      ARMOR_FUZZ_CHECK(to.slot == 0 && to.port == 0 && to.host.empty());
      if (to.kind == d::redis_redirect_kind::try_again) ARMOR_FUZZ_CHECK(d::redis_error_starts_with(r, "TRYAGAIN"));
      break;
    case d::redis_redirect_kind::moved:
    case d::redis_redirect_kind::ask:
      ARMOR_FUZZ_CHECK(d::redis_error_starts_with(r, to.kind == d::redis_redirect_kind::moved ? "MOVED " : "ASK "));
      ARMOR_FUZZ_CHECK(to.slot < d::redis_slot_count && to.port >= 1);
      ARMOR_FUZZ_CHECK(inside(to.host, r));
      break;
  }
}

void check_sentinel(const redisReply* r) {
  if (const auto at = d::redis_sentinel_primary_reply(r)) {
    ARMOR_FUZZ_CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    ARMOR_FUZZ_CHECK(!at->host.empty() && at->port >= 1);
    ARMOR_FUZZ_CHECK(inside(at->host, r->element[0]));
  }
  if (d::redis_role_is_primary(r)) {
    ARMOR_FUZZ_CHECK(r->type == REDIS_REPLY_ARRAY && r->elements >= 1);
    ARMOR_FUZZ_CHECK(std::string_view(r->element[0]->str, r->element[0]->len) == "master");
  }
}

void check_breaker(const redisReply* r) {
  for (const std::int64_t want : {std::int64_t{0}, std::int64_t{1}, std::int64_t{3}}) {
    const auto a = d::redis_breaker_sync_reply(r, want);
    if (!a) continue;
    ARMOR_FUZZ_CHECK(a->phase <= 2);
    ARMOR_FUZZ_CHECK(a->open_left_ms >= 0 && a->open_left_ms <= (std::int64_t{1} << 40));
    ARMOR_FUZZ_CHECK(a->phase == 1 || a->open_left_ms == 0);
    ARMOR_FUZZ_CHECK(a->granted >= 0 && a->granted <= want && (a->phase == 2 || a->granted == 0));
    ARMOR_FUZZ_CHECK(a->generation <= static_cast<std::uint64_t>(INT64_MAX) &&
                     a->reporters <= static_cast<std::uint64_t>(INT64_MAX));
  }
}

void check_window(const redisReply* r) {
  using s = d::redis_script;
  static constexpr std::array<d::redis_window_ask, 6> asks{{
      {s::window_fixed, 1, 5, 1'000'000'000, 1, true, 1'718'452'800, 7},
      {s::window_fixed, 3, 2, 1000, 1, false, 0, 0},
      {s::window_exact, 2, 10, 100'000, 10, true, -4, 99'999},
      {s::window_exact, 0, 1, 1000, 4096, false, 0, 0},
      {s::window_approx, 1, 100, 10'000'000'000, 1, true, 171'845'280, 0},
      {s::window_approx, 4, 3, 1000, 1, false, 0, 0},
  }};
  for (const d::redis_window_ask& q : asks) {
    const auto a = d::redis_window_reply(r, q);
    if (!a) continue;
    ARMOR_FUZZ_CHECK(a->status >= 0 && a->status <= 2 && (a->status == 2) == (q.n > q.limit));
    ARMOR_FUZZ_CHECK(a->elapsed >= 0 && a->elapsed < q.period);
    ARMOR_FUZZ_CHECK(!q.caller || (a->index == q.index && a->elapsed == q.elapsed));
    ARMOR_FUZZ_CHECK(a->at >= a->index && static_cast<i128>(a->at - a->index) * q.period <= slice_max);
    ARMOR_FUZZ_CHECK(a->a >= 0 && a->a <= slice_max);
    if (q.script == s::window_exact) {
      ARMOR_FUZZ_CHECK(a->b >= 0 && a->b <= q.segments && a->c >= 0 && a->c <= q.segments);
      ARMOR_FUZZ_CHECK(a->status != 1 || a->c >= 1);
    }
    if (q.script == s::window_approx) {
      ARMOR_FUZZ_CHECK(a->b >= 0 && a->b <= slice_max);
      // A denial that fits the current window has a previous one to wait for,
      // and one that does not has a current count (retry_after divides by them).
      ARMOR_FUZZ_CHECK(a->status != 1 || (a->b + q.n <= q.limit ? a->a > 0 : a->b > 0));
    }
  }
}

void check_all(const redisReply* r, int depth) {
  check_bucket(r);
  check_quota(r);
  check_cluster(r);
  check_sentinel(r);
  check_breaker(r);
  check_window(r);
  if (depth == 0 || r == nullptr || r->type != REDIS_REPLY_ARRAY) return;
  for (std::size_t i = 0; i < r->elements; ++i) check_all(r->element[i], depth - 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (!small_arrays(bytes)) return 0;
  redisReader* reader = redisReaderCreate();
  if (reader == nullptr) return 0;
  if (redisReaderFeed(reader, bytes.data(), bytes.size()) == REDIS_OK) {
    for (int replies = 0; replies < 64; ++replies) {
      void* out = nullptr;
      if (redisReaderGetReply(reader, &out) != REDIS_OK || out == nullptr) break;
      const d::redis_reply_ptr reply(static_cast<redisReply*>(out));
      check_all(reply.get(), 3);
    }
  }
  redisReaderFree(reader);
  check_all(nullptr, 0);
  return 0;
}
