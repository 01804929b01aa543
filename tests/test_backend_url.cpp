// armor::parse_backend_url: the URL that says where shared state lives,
// table-driven, valid and invalid, with the part each message must name.
#include <armor/storage/backend_url.hpp>

#include "armor_catch.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace {

std::string message_of(std::string_view url) {
  try {
    (void)armor::parse_backend_url(url);
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST_CASE("backend url: memory and sqlite") {
  CHECK(armor::parse_backend_url("memory:").scheme == armor::backend_scheme::memory);
  CHECK(armor::parse_backend_url("memory://").scheme == armor::backend_scheme::memory);

  const auto abs = armor::parse_backend_url("sqlite:///var/lib/app/quota.db?mode=batched&create=true");
  CHECK(abs.scheme == armor::backend_scheme::sqlite);
  CHECK(abs.path == "/var/lib/app/quota.db");
  CHECK(abs.param("mode") == "batched");
  CHECK(abs.param("create") == "true");
  CHECK_FALSE(abs.param("tracker"));
  REQUIRE(abs.params.size() == 2);
  CHECK(abs.params[0].first == "mode");  // in the order written

  CHECK(armor::parse_backend_url("sqlite:quota.db").path == "quota.db");
  CHECK(armor::parse_backend_url("sqlite:data/my%20quota.db").path == "data/my quota.db");
}

TEST_CASE("backend url: redis, sentinel, cluster") {
  const auto one = armor::parse_backend_url("redis://10.0.0.5");
  CHECK(one.scheme == armor::backend_scheme::redis);
  REQUIRE(one.hosts.size() == 1);
  CHECK(one.hosts[0].host == "10.0.0.5");
  CHECK(one.hosts[0].port == 6379);
  CHECK(one.path.empty());

  const auto full = armor::parse_backend_url("redis://:s%40cret@cache.internal:6380/0?prefix=app&command_timeout=50ms");
  CHECK(full.user.empty());
  CHECK(full.password == "s@cret");
  CHECK(full.hosts[0].host == "cache.internal");
  CHECK(full.hosts[0].port == 6380);
  CHECK(full.path == "0");
  CHECK(full.param("prefix") == "app");
  CHECK(full.param("command_timeout") == "50ms");

  const auto v6 = armor::parse_backend_url("redis://[::1]:7000");
  CHECK(v6.hosts[0].host == "::1");
  CHECK(v6.hosts[0].port == 7000);
  CHECK(armor::parse_backend_url("redis://[fe80::1]").hosts[0].port == 6379);

  const auto sentinel = armor::parse_backend_url("redis+sentinel://10.0.0.7,10.0.0.8:26380,[::1]/mymaster");
  CHECK(sentinel.scheme == armor::backend_scheme::redis_sentinel);
  REQUIRE(sentinel.hosts.size() == 3);
  CHECK(sentinel.hosts[0].port == 26379);  // Sentinel's own default port
  CHECK(sentinel.hosts[1].port == 26380);
  CHECK(sentinel.hosts[2].host == "::1");
  CHECK(sentinel.path == "mymaster");
  CHECK(sentinel.database.empty());
  const auto with_db = armor::parse_backend_url("redis+sentinel://s1/mymaster/0");
  CHECK(with_db.path == "mymaster");
  CHECK(with_db.database == "0");

  const auto cluster = armor::parse_backend_url("redis+cluster://n1:7000,n2:7001?connections=4");
  CHECK(cluster.scheme == armor::backend_scheme::redis_cluster);
  REQUIRE(cluster.hosts.size() == 2);
  CHECK(cluster.hosts[1].host == "n2");
  CHECK(cluster.hosts[1].port == 7001);
  CHECK(cluster.param("connections") == "4");
}

TEST_CASE("backend url: a bad URL is refused, naming the part that is wrong") {
  struct bad {
    std::string_view url;
    std::string_view names;
  };
  const std::vector<bad> cases{
      {"", "no scheme"},
      {"localhost:6379", "unknown scheme \"localhost\""},
      {"postgres://db", "unknown scheme \"postgres\""},
      {"rediss://cache:6379", "TLS"},
      {"memory:/tmp/x", "memory: takes no host or path"},
      {"sqlite:", "path is missing"},
      {"sqlite://host/file.db", "sqlite: has no host"},
      {"redis:10.0.0.5", "'//' and a host were expected"},
      {"redis://", "a host is missing"},
      {"redis://:pw@", "a host is missing"},
      {"redis://h:0", "port \"0\""},
      {"redis://h:65536", "port \"65536\""},
      {"redis://h:63x", "port \"63x\""},
      {"redis://h:", "empty port"},
      {"redis://::1:6379", "IPv6 address goes in brackets"},
      {"redis://[::1:6379", "'[' without ']'"},
      {"redis://[::1]6379", "only ':port' may follow ']'"},
      {"redis://[10.0.0.1]", "brackets are for IPv6"},
      {"redis://h,i", "names one server"},
      {"redis://h/db1", "database number"},
      {"redis://a b", "a host name or an IP address"},
      {"redis+sentinel://s1:26379", "primary's name is missing"},
      {"redis+sentinel://s1/mymaster/x", "the path is a database number (got \"x\")"},
      {"redis+sentinel://s1/mymaster/0/1", "the path is a database number (got \"0/1\")"},
      {"redis+sentinel://s1//0", "primary's name is missing"},
      {"redis+cluster://n1/x", "takes no path"},
      {"redis+cluster://n1,,n2", "a host is empty"},
      {"redis://h?", "'?' without a query"},
      {"redis://h?prefix", "query parameter \"prefix\": name=value"},
      {"redis://h?=x", "name=value"},
      {"redis://h?a=1&&b=2", "name=value"},
      {"redis://h?a=1&a=2", "\"a\" is given twice"},
      {"redis://h?prefix=%zz", "two hexadecimal digits"},
      {"redis://h?prefix=abc%4", "two hexadecimal digits"},
      {"redis://h#frag", "fragment"},
  };
  for (const auto& c : cases) {
    INFO(c.url);
    const std::string m = message_of(c.url);
    CHECK(m.find(c.names) != std::string::npos);
    if (!c.url.empty()) CHECK(m.find(std::string(c.url)) != std::string::npos);  // the URL is quoted
  }
}

TEST_CASE("backend url: to_string names every scheme") {
  CHECK(armor::to_string(armor::backend_scheme::memory) == "memory");
  CHECK(armor::to_string(armor::backend_scheme::sqlite) == "sqlite");
  CHECK(armor::to_string(armor::backend_scheme::redis) == "redis");
  CHECK(armor::to_string(armor::backend_scheme::redis_sentinel) == "redis_sentinel");
  CHECK(armor::to_string(armor::backend_scheme::redis_cluster) == "redis_cluster");
}
