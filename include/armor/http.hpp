// armor/http.hpp: HTTP for armor, all of it. Judging responses, reading the
// server's hints (Retry-After, rate-limit headers), writing a server's own
// rate-limit headers, and pacing a client by them. Each concern has its own
// header, which can be included alone:
//
//   armor/http/status.hpp      status codes as error codes, status_rule, transport errors
//   armor/http/date.hpp        HTTP dates, Retry-After
//   armor/http/headers.hpp     the response concept (ADL armor_http_header / armor_http_status), header_map
//   armor/http/rate_limit.hpp  rate-limit headers: read_rate_limit, rate_limit_headers
//   armor/http/classifier.hpp  status_classifier, for armor::classify
//   armor/http/pacer.hpp       pacer and pace(): needs armor/token_bucket.hpp
//
//     using namespace std::chrono_literals;
//     namespace http = armor::http;
//
//     auto p = armor::pipeline{
//         armor::classify{http::status_classifier{}},   // 408/429/5xx retried after Retry-After
//         armor::deadline{10s},
//         armor::backoff{{.max_attempts = 4, .initial = 200ms}},
//         std::ref(bucket),
//     };
//     http::pacer pace{bucket, {.ceiling = {50, 1s}}};
//     auto res = p.execute([&](const armor::context& ctx) {
//         auto r = client.get(url, ctx.remaining());
//         pace.observe(r);                              // spread the remaining quota until its reset
//         return r;
//     });
//
// No header here includes a third-party header. See docs/http.md.
#pragma once

#include <armor/http/classifier.hpp>
#include <armor/http/date.hpp>
#include <armor/http/headers.hpp>
#include <armor/http/pacer.hpp>
#include <armor/http/rate_limit.hpp>
#include <armor/http/status.hpp>
