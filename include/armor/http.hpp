// armor/http.hpp: HTTP for armor, all of it: judging responses, reading the
// server's hints (Retry-After, rate-limit headers), writing a server's own
// rate-limit headers, and pacing a client by them. An umbrella: each concern
// has its own header, which can be included alone and shows its own example:
//
//   armor/http/status.hpp      status codes as error codes, status_rule, transport errors
//   armor/http/date.hpp        HTTP dates, Retry-After
//   armor/http/headers.hpp     the response concept (ADL armor_http_header / armor_http_status), header_map
//   armor/http/rate_limit.hpp  rate-limit headers: read_rate_limit, rate_limit_headers
//   armor/http/classifier.hpp  status_classifier, for armor::classify
//   armor/http/pacer.hpp       pacer and pace(): needs armor/token_bucket.hpp
//   armor/http/answer.hpp      a server's answer (429, 503, 504, Retry-After) for any refusal
//   armor/http/cache_control.hpp  Cache-Control read into armor::cache freshness
//
// No header here includes a third-party header. A pipeline that uses them
// together: docs/http.md.
#pragma once

#include <armor/http/answer.hpp>
#include <armor/http/cache_control.hpp>
#include <armor/http/classifier.hpp>
#include <armor/http/date.hpp>
#include <armor/http/headers.hpp>
#include <armor/http/pacer.hpp>
#include <armor/http/rate_limit.hpp>
#include <armor/http/status.hpp>
