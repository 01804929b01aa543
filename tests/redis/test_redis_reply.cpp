// armor's readers of Redis replies (detail/redis_reply.hpp), on replies
// made by hiredis' own reader from RESP text (what the scripts really
// answer, captured from redis-server 7.0) and on hand-built trees hiredis
// never makes (NULL pointers). Issue 26: each "refused" case below was read
// before as something else (a grant of fewer tokens than asked, made into
// a lease of 2^64 - 1 tokens; a configured rate of zero; a slice at
// INT64_MAX that quota_tracker::usage then overflowed; a NULL element, which
// hiredis never makes, dereferenced). No Redis server is needed.
#include <armor/detail/redis_reply.hpp>

#include "armor_catch.hpp"

#include <hiredis/hiredis.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace {

using armor::detail::redis_reply_ptr;

// The one reply hiredis' reader makes of `resp` (which must hold exactly one).
redis_reply_ptr parse(std::string_view resp) {
  redisReader* reader = redisReaderCreate();
  REQUIRE(reader != nullptr);
  REQUIRE(redisReaderFeed(reader, resp.data(), resp.size()) == REDIS_OK);
  void* out = nullptr;
  const int rc = redisReaderGetReply(reader, &out);
  redisReaderFree(reader);
  REQUIRE(rc == REDIS_OK);
  REQUIRE(out != nullptr);
  return redis_reply_ptr(static_cast<redisReply*>(out));
}

// RESP for an array of integers.
std::string ints(std::initializer_list<std::int64_t> v) {
  std::string s = "*";
  s += std::to_string(v.size());
  s += "\r\n";
  for (const std::int64_t x : v) {
    s += ':';
    s += std::to_string(x);
    s += "\r\n";
  }
  return s;
}

constexpr std::int64_t second = 1'000'000'000;
constexpr std::int64_t i64_max = std::numeric_limits<std::int64_t>::max();

}  // namespace

TEST_CASE("redis reply: bucket_acquire's real answers are read as the script wrote them", "[redis][reply]") {
  using armor::detail::redis_bucket_acquire_reply;
  const auto grant = parse(ints({0, 4 * second, -second, 4, 1, second, 5, 1796514748158335, 4 * second}));
  const auto a = redis_bucket_acquire_reply(grant.get(), 1, 4);
  REQUIRE(a.has_value());
  CHECK(a->status == 0);
  CHECK(a->debt == 4 * second);
  CHECK(a->late == -second);
  CHECK(a->granted == 4);
  CHECK(a->config == armor::detail::bucket_config{1, second, 5});
  CHECK(a->q == 1796514748158335);
  CHECK(a->t == 4 * second);

  const auto denial = parse(ints({1, 5 * second, second, 0, 1, second, 5, 0, 0}));
  const auto d = redis_bucket_acquire_reply(denial.get(), 1, 1);
  REQUIRE(d.has_value());
  CHECK(d->status == 1);
  CHECK(d->late == second);

  const auto too_large = parse(ints({2, 0, 0, 0, 1, second, 5, 0, 0}));
  REQUIRE(redis_bucket_acquire_reply(too_large.get(), 9, 9).has_value());
  CHECK(redis_bucket_acquire_reply(too_large.get(), 9, 9)->status == 2);
}

TEST_CASE("redis reply: a bucket_acquire answer the script cannot give is refused", "[redis][reply]") {
  using armor::detail::redis_bucket_acquire_reply;
  const auto refused = [](const std::string& resp, std::int64_t n, std::int64_t want) {
    const auto r = parse(resp);
    return !redis_bucket_acquire_reply(r.get(), n, want).has_value();
  };
  // Fewer tokens than asked (lease_refill took granted - n, below zero, as
  // a lease of 2^64 - 1 tokens), more than the lease asked, more than the burst.
  CHECK(refused(ints({0, second, 0, 0, 1, second, 5, 1, second}), 1, 4));
  CHECK(refused(ints({0, second, 0, 5, 1, second, 5, 1, second}), 1, 4));
  CHECK(refused(ints({0, second, 0, 4, 1, second, 3, 1, second}), 1, 4));
  // A status other than 0, 1, 2 (read as "too large" before).
  CHECK(refused(ints({7, 0, 0, 0, 1, second, 5, 0, 0}), 1, 1));
  CHECK(refused(ints({-1, 0, 0, 0, 1, second, 5, 0, 0}), 1, 1));
  // A denial that is not late, a grant that is; a debt out of range.
  CHECK(refused(ints({1, 0, 0, 0, 1, second, 5, 0, 0}), 1, 1));
  CHECK(refused(ints({0, 0, 1, 1, 1, second, 5, 0, 0}), 1, 1));
  CHECK(refused(ints({0, -1, 0, 1, 1, second, 5, 0, 0}), 1, 1));
  CHECK(refused(ints({1, i64_max, i64_max, 0, 1, second, 5, 0, 0}), 1, 1));
  // A config of zero, or one beyond the scripts' exact range
  // (granted * period then overflowed in lease_refill).
  CHECK(refused(ints({0, 0, 0, 1, 0, second, 5, 0, 0}), 1, 1));
  CHECK(refused(ints({0, 0, 0, 1, 1, i64_max, i64_max, 0, 0}), 1, 1));
  // A field that is not an integer (read as 0 before), a short or long array.
  CHECK(refused("*9\r\n:0\r\n$1\r\n0\r\n:0\r\n:1\r\n:1\r\n:1000000000\r\n:5\r\n:0\r\n:0\r\n", 1, 1));
  CHECK(refused(ints({0, 0, 0, 1, 1, second, 5, 0}), 1, 1));
  CHECK(refused(ints({0, 0, 0, 1, 1, second, 5, 0, 0, 0}), 1, 1));
  CHECK(refused(":0\r\n", 1, 1));
  CHECK_FALSE(redis_bucket_acquire_reply(nullptr, 1, 1).has_value());
}

TEST_CASE("redis reply: bucket_configure and bucket_return answers", "[redis][reply]") {
  using armor::detail::redis_bucket_configure_reply;
  using armor::detail::redis_bucket_return_reply;
  const auto ok = parse(ints({0, 2, second, 5}));
  REQUIRE(redis_bucket_configure_reply(ok.get()).has_value());
  CHECK_FALSE(redis_bucket_configure_reply(ok.get())->refused);
  CHECK(redis_bucket_configure_reply(ok.get())->config == armor::detail::bucket_config{2, second, 5});
  const auto too_long = parse(ints({1, 1, second, std::int64_t{1} << 52}));
  REQUIRE(redis_bucket_configure_reply(too_long.get()).has_value());
  CHECK(redis_bucket_configure_reply(too_long.get())->refused);
  // A config of zero used to become the bucket's seen() config.
  CHECK_FALSE(redis_bucket_configure_reply(parse(ints({0, 0, 1, 1})).get()).has_value());
  CHECK_FALSE(redis_bucket_configure_reply(parse(ints({2, 1, second, 5})).get()).has_value());
  CHECK_FALSE(redis_bucket_configure_reply(parse(ints({1, 1, second, 5})).get()).has_value());  // not too long
  CHECK_FALSE(redis_bucket_configure_reply(parse(ints({0, 1, second, std::int64_t{1} << 52})).get()).has_value());

  CHECK(redis_bucket_return_reply(parse(":1\r\n").get()) == std::optional<bool>(true));
  CHECK(redis_bucket_return_reply(parse(":0\r\n").get()) == std::optional<bool>(false));
  CHECK_FALSE(redis_bucket_return_reply(parse(":2\r\n").get()).has_value());
  CHECK_FALSE(redis_bucket_return_reply(parse("+OK\r\n").get()).has_value());
}

TEST_CASE("redis reply: quota_consume answers", "[redis][reply]") {
  using armor::detail::redis_quota_consume_reply;
  const auto grant = parse(ints({0, 0, 1, 28333, 1, 472, 1}));
  const auto g = redis_quota_consume_reply(grant.get(), 2, 1, 1, true);
  REQUIRE(g.has_value());
  CHECK_FALSE(g->refused);
  CHECK(g->granted == 1);
  CHECK(g->at[0] == 28333);
  CHECK(g->used[0] == 1);
  CHECK(g->at[1] == 472);
  CHECK(g->used[1] == 1);
  CHECK_FALSE(redis_quota_consume_reply(grant.get(), 1, 1, 1, true).has_value());  // one window expected

  const auto lease = parse(ints({0, 0, 8, 28333, 8}));
  REQUIRE(redis_quota_consume_reply(lease.get(), 1, 1, 8, true).has_value());
  CHECK(redis_quota_consume_reply(lease.get(), 1, 1, 8, true)->granted == 8);
  CHECK_FALSE(redis_quota_consume_reply(lease.get(), 1, 1, 4, true).has_value());  // more than asked

  const auto denial = parse(ints({1, 0, 0, 28333, 3}));
  const auto d = redis_quota_consume_reply(denial.get(), 1, 1, 1, true);
  REQUIRE(d.has_value());
  CHECK(d->refused);
  CHECK(d->window == 0);
  CHECK(d->at[0] == 28333);
  CHECK(d->used[0] == 3);

  const auto refused = [](std::initializer_list<std::int64_t> v, std::size_t windows, std::int64_t n,
                          std::int64_t want) {
    return !redis_quota_consume_reply(parse(ints(v)).get(), windows, n, want, true).has_value();
  };
  // Fewer units than asked: lease_refill's granted - n was negative, a
  // lease of 2^64 - 1 units.
  CHECK(refused({0, 0, 0, 28333, 1}, 1, 1, 8));
  CHECK(refused({0, 0, -5, 28333, 1}, 1, 1, 8));
  // Counts below zero or beyond the cap; slices beyond the scripts' range.
  CHECK(refused({0, 0, 1, 28333, -1}, 1, 1, 1));
  CHECK(refused({0, 0, 1, 28333, i64_max}, 1, 1, 1));
  CHECK(refused({0, 0, 1, i64_max, 1}, 1, 1, 1));
  CHECK(refused({1, 0, 0, 28333, -3}, 1, 1, 1));
  // A window that does not exist (negative: read as 2^64 - 1 before).
  CHECK(refused({1, 1, 0, 28333, 3}, 1, 1, 1));
  CHECK(refused({1, -1, 0, 28333, 3}, 1, 1, 1));
  // Flags the script never sends.
  CHECK(refused({2, 0, 0, 28333, 3}, 1, 1, 1));
  CHECK(refused({0, 1, 1, 28333, 1}, 1, 1, 1));
  CHECK(refused({0, 0}, 1, 1, 1));
  // Without check the script counts exactly n.
  CHECK(redis_quota_consume_reply(parse(ints({0, 0, 3, 5, 3})).get(), 1, 3, 3, false).has_value());
  CHECK_FALSE(redis_quota_consume_reply(parse(ints({0, 0, 2, 5, 3})).get(), 1, 3, 3, false).has_value());
  CHECK_FALSE(redis_quota_consume_reply(nullptr, 1, 1, 1, true).has_value());
}

TEST_CASE("redis reply: quota_read and quota_alert answers", "[redis][reply]") {
  using armor::detail::redis_quota_read_reply;
  std::array<std::int64_t, 4> out{-1, -1, -1, -1};
  const auto read = parse(ints({28333, 0, 0, 0, 8}));
  REQUIRE(redis_quota_read_reply(read.get(), 3, out) == std::optional<std::int64_t>(28333));
  CHECK(out == std::array<std::int64_t, 4>{0, 0, 0, 8});
  // A slice at INT64_MAX: quota_tracker::usage formed slice + 1 with it.
  out.fill(-1);
  CHECK_FALSE(redis_quota_read_reply(parse(ints({i64_max, 0, 0, 0, 8})).get(), 3, out).has_value());
  CHECK_FALSE(redis_quota_read_reply(parse(ints({28333, 0, -1, 0, 8})).get(), 3, out).has_value());
  CHECK_FALSE(redis_quota_read_reply(parse(ints({28333, 0, 0, 8})).get(), 3, out).has_value());
  CHECK(out == std::array<std::int64_t, 4>{-1, -1, -1, -1});  // nothing written on refusal
  // A shorter span takes what it holds.
  std::array<std::int64_t, 2> two{};
  REQUIRE(redis_quota_read_reply(read.get(), 3, two).has_value());
  CHECK(two == std::array<std::int64_t, 2>{0, 0});

  using armor::detail::redis_quota_alert_reply;
  CHECK(redis_quota_alert_reply(parse(":2\r\n").get()) == std::optional<std::size_t>(2));
  CHECK_FALSE(redis_quota_alert_reply(parse(":-2\r\n").get()).has_value());
  CHECK_FALSE(redis_quota_alert_reply(parse("$1\r\n2\r\n").get()).has_value());
}

TEST_CASE("redis reply: CLUSTER SLOTS entries", "[redis][reply]") {
  using armor::detail::redis_cluster_slots_entry;
  // Redis 7.0, one node serving two ranges (no host: the node asked).
  const auto seven = parse(
      "*2\r\n*3\r\n:0\r\n:5460\r\n*4\r\n$0\r\n\r\n:6498\r\n$2\r\nid\r\n*0\r\n"
      "*3\r\n:10000\r\n:16383\r\n*4\r\n$0\r\n\r\n:6498\r\n$2\r\nid\r\n*0\r\n");
  const auto a = redis_cluster_slots_entry(seven.get(), 0);
  REQUIRE(a.has_value());
  CHECK(a->first == 0);
  CHECK(a->last == 5460);
  CHECK(a->host.empty());
  CHECK(a->port == 6498);
  REQUIRE(redis_cluster_slots_entry(seven.get(), 1).has_value());
  CHECK(redis_cluster_slots_entry(seven.get(), 1)->last == 16383);
  CHECK_FALSE(redis_cluster_slots_entry(seven.get(), 2).has_value());

  const auto named = parse("*1\r\n*4\r\n:1\r\n:2\r\n*3\r\n$9\r\n10.0.0.11\r\n:7000\r\n$2\r\nid\r\n*2\r\n$1\r\nx\r\n:1\r\n");
  REQUIRE(redis_cluster_slots_entry(named.get(), 0).has_value());
  CHECK(redis_cluster_slots_entry(named.get(), 0)->host == "10.0.0.11");
  const auto unknown = parse("*1\r\n*3\r\n:1\r\n:2\r\n*2\r\n$1\r\n?\r\n:7000\r\n");
  REQUIRE(redis_cluster_slots_entry(unknown.get(), 0).has_value());
  CHECK(redis_cluster_slots_entry(unknown.get(), 0)->host.empty());

  const auto skipped = [](std::string_view resp) { return !redis_cluster_slots_entry(parse(resp).get(), 0); };
  CHECK(skipped("*1\r\n*3\r\n:5\r\n:4\r\n*2\r\n$1\r\nh\r\n:7000\r\n"));      // first > last
  CHECK(skipped("*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:7000\r\n"));  // beyond the last slot
  CHECK(skipped("*1\r\n*3\r\n:-1\r\n:4\r\n*2\r\n$1\r\nh\r\n:7000\r\n"));
  CHECK(skipped("*1\r\n*3\r\n:0\r\n:4\r\n*2\r\n$1\r\nh\r\n:65536\r\n"));     // no such port
  CHECK(skipped("*1\r\n*3\r\n:0\r\n:4\r\n*2\r\n$1\r\nh\r\n$4\r\n7000\r\n")); // a port that is a string
  CHECK(skipped("*1\r\n*3\r\n:0\r\n:4\r\n*1\r\n$1\r\nh\r\n"));               // no port
  CHECK(skipped("*1\r\n*2\r\n:0\r\n:4\r\n"));                                 // no primary
  CHECK(skipped("*1\r\n:0\r\n"));
  CHECK(skipped("+OK\r\n"));

  // A tree hiredis' reader never makes: NULL elements (dereferenced before).
  redisReply primary{};
  primary.type = REDIS_REPLY_ARRAY;
  primary.elements = 2;
  std::array<redisReply*, 2> primary_elements{nullptr, nullptr};
  primary.element = primary_elements.data();
  redisReply zero{};
  zero.type = REDIS_REPLY_INTEGER;
  std::array<redisReply*, 3> range_elements{&zero, &zero, &primary};
  redisReply range{};
  range.type = REDIS_REPLY_ARRAY;
  range.elements = 3;
  range.element = range_elements.data();
  std::array<redisReply*, 2> top_elements{nullptr, &range};
  redisReply top{};
  top.type = REDIS_REPLY_ARRAY;
  top.elements = 2;
  top.element = top_elements.data();
  CHECK_FALSE(redis_cluster_slots_entry(&top, 0).has_value());
  CHECK_FALSE(redis_cluster_slots_entry(&top, 1).has_value());  // no port
  redisReply port{};
  port.type = REDIS_REPLY_INTEGER;
  port.integer = 7000;
  primary_elements[1] = &port;
  const auto no_host = redis_cluster_slots_entry(&top, 1);  // NULL host: the node asked
  REQUIRE(no_host.has_value());
  CHECK(no_host->host.empty());
  CHECK(no_host->port == 7000);
  top.element = nullptr;
  CHECK_FALSE(redis_cluster_slots_entry(&top, 1).has_value());
}

TEST_CASE("redis reply: MOVED, ASK and TRYAGAIN", "[redis][reply]") {
  using armor::detail::redis_redirect_kind;
  using armor::detail::redis_redirect_of;
  // host points into the reply: each reply is kept while its redirect is read.
  const auto moved_reply = parse("-MOVED 3999 127.0.0.1:6381\r\n");
  const auto moved = redis_redirect_of(moved_reply.get());
  CHECK(moved.kind == redis_redirect_kind::moved);
  CHECK(moved.slot == 3999);
  CHECK(moved.host == "127.0.0.1");
  CHECK(moved.port == 6381);
  const auto ask_reply = parse("-ASK 16383 ::1:7002\r\n");
  const auto ask = redis_redirect_of(ask_reply.get());
  CHECK(ask.kind == redis_redirect_kind::ask);
  CHECK(ask.slot == 16383);
  CHECK(ask.host == "::1");
  CHECK(ask.port == 7002);
  const auto same_host_reply = parse("-MOVED 1 :6380\r\n");
  const auto same_host = redis_redirect_of(same_host_reply.get());
  CHECK(same_host.kind == redis_redirect_kind::moved);
  CHECK(same_host.host.empty());
  CHECK(redis_redirect_of(parse("-TRYAGAIN Multiple keys request during rehashing of slot\r\n").get()).kind ==
        redis_redirect_kind::try_again);

  const auto none = [](std::string_view resp) {
    const auto reply = parse(resp);
    const auto r = redis_redirect_of(reply.get());
    return r.kind == redis_redirect_kind::none && r.slot == 0 && r.port == 0 && r.host.empty();
  };
  CHECK(none("-MOVED 16384 h:1\r\n"));
  CHECK(none("-MOVED 1 h:0\r\n"));
  CHECK(none("-MOVED 1 h:65536\r\n"));
  CHECK(none("-MOVED 1 h\r\n"));
  CHECK(none("-MOVED 1\r\n"));
  CHECK(none("-MOVED -1 h:1\r\n"));
  CHECK(none("-ERR MOVED 1 h:1\r\n"));
  CHECK(none("+MOVED 1 h:1\r\n"));  // a status, not an error
  CHECK(none("$13\r\nMOVED 1 h:100\r\n"));
  CHECK(redis_redirect_of(nullptr).kind == redis_redirect_kind::none);
  redisReply no_text{};
  no_text.type = REDIS_REPLY_ERROR;
  no_text.len = 5;  // and str NULL
  CHECK(redis_redirect_of(&no_text).kind == redis_redirect_kind::none);
  CHECK_FALSE(armor::detail::redis_error_starts_with(&no_text, "NOSCRIPT"));
  CHECK(armor::detail::redis_error_starts_with(parse("-NOSCRIPT No matching script.\r\n").get(), "NOSCRIPT"));
}

TEST_CASE("redis reply: Sentinel's primary address and ROLE", "[redis][reply]") {
  using armor::detail::redis_role_is_primary;
  using armor::detail::redis_sentinel_primary_reply;
  const auto named = parse("*2\r\n$9\r\n127.0.0.1\r\n$5\r\n16379\r\n");
  const auto at = redis_sentinel_primary_reply(named.get());
  REQUIRE(at.has_value());
  CHECK(at->host == "127.0.0.1");
  CHECK(at->port == 16379);

  const auto refused = [](std::string_view resp) {
    const auto reply = parse(resp);
    return !redis_sentinel_primary_reply(reply.get()).has_value();
  };
  CHECK(refused("*-1\r\n"));                                // a name the sentinel does not monitor
  CHECK(refused("*2\r\n$0\r\n\r\n$4\r\n6379\r\n"));          // no host
  CHECK(refused("*2\r\n$1\r\nh\r\n$1\r\n0\r\n"));            // port 0
  CHECK(refused("*2\r\n$1\r\nh\r\n$5\r\n65536\r\n"));        // port out of range
  CHECK(refused("*2\r\n$1\r\nh\r\n$4\r\n63x9\r\n"));         // not a number
  CHECK(refused("*2\r\n$1\r\nh\r\n:6379\r\n"));              // an integer, not Sentinel's string
  CHECK(refused("*3\r\n$1\r\nh\r\n$4\r\n6379\r\n$1\r\nx\r\n"));
  CHECK(refused("-IDONTKNOW No such master\r\n"));
  CHECK_FALSE(redis_sentinel_primary_reply(nullptr).has_value());

  CHECK(redis_role_is_primary(parse("*3\r\n$6\r\nmaster\r\n:1234\r\n*0\r\n").get()));
  CHECK_FALSE(redis_role_is_primary(parse("*5\r\n$5\r\nslave\r\n$1\r\nh\r\n:6379\r\n$9\r\nconnected\r\n:1\r\n").get()));
  CHECK_FALSE(redis_role_is_primary(parse("*0\r\n").get()));
  CHECK_FALSE(redis_role_is_primary(parse("$6\r\nmaster\r\n").get()));  // not inside an array
  CHECK_FALSE(redis_role_is_primary(parse("-ERR unknown command 'ROLE'\r\n").get()));
  CHECK_FALSE(redis_role_is_primary(nullptr));
}

TEST_CASE("redis reply: breaker_sync answers", "[redis][reply]") {
  using armor::detail::redis_breaker_sync_reply;
  const auto open_reply = parse("*5\r\n:1\r\n:7\r\n:29950\r\n:0\r\n:2\r\n");
  const auto open = redis_breaker_sync_reply(open_reply.get(), 0);
  REQUIRE(open.has_value());
  CHECK(open->phase == 1);
  CHECK(open->generation == 7);
  CHECK(open->open_left_ms == 29950);
  CHECK(open->granted == 0);
  CHECK(open->reporters == 2);
  const auto probing = redis_breaker_sync_reply(parse("*5\r\n:2\r\n:8\r\n:0\r\n:1\r\n:0\r\n").get(), 1);
  REQUIRE(probing.has_value());
  CHECK(probing->granted == 1);

  const auto refused = [](std::string_view resp, std::int64_t want) {
    const auto reply = parse(resp);
    return !redis_breaker_sync_reply(reply.get(), want).has_value();
  };
  CHECK(refused("*5\r\n:3\r\n:7\r\n:0\r\n:0\r\n:0\r\n", 0));            // no phase 3
  CHECK(refused("*5\r\n:0\r\n:-1\r\n:0\r\n:0\r\n:0\r\n", 0));           // negative generation
  CHECK(refused("*5\r\n:1\r\n:7\r\n:-5\r\n:0\r\n:0\r\n", 0));           // negative time left
  CHECK(refused("*5\r\n:1\r\n:7\r\n:9223372036854775807\r\n:0\r\n:0\r\n", 0));  // would overflow the clock
  // open_for may be up to a year: 60 days left (over 2^32 ms) is an answer.
  CHECK(redis_breaker_sync_reply(parse("*5\r\n:1\r\n:7\r\n:5184000000\r\n:0\r\n:0\r\n").get(), 0).has_value());
  CHECK(refused("*5\r\n:0\r\n:7\r\n:100\r\n:0\r\n:0\r\n", 0));          // closed, yet time left open
  CHECK(refused("*5\r\n:2\r\n:8\r\n:0\r\n:2\r\n:0\r\n", 1));            // more probes than asked
  CHECK(refused("*5\r\n:0\r\n:8\r\n:0\r\n:1\r\n:0\r\n", 1));            // probes while closed
  CHECK(refused("*5\r\n:0\r\n:8\r\n:0\r\n:0\r\n:-1\r\n", 0));           // negative reporters
  CHECK(refused("*4\r\n:0\r\n:8\r\n:0\r\n:0\r\n", 0));
  CHECK(refused("*5\r\n:0\r\n$1\r\n8\r\n:0\r\n:0\r\n:0\r\n", 0));       // a string, not an integer
  CHECK(refused("-ERR oom\r\n", 0));
  CHECK_FALSE(redis_breaker_sync_reply(nullptr, 1).has_value());
}
