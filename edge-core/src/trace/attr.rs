//! The attribute names every `edge-*` crate records, in one place so that spans, `tracing` fields, logs
//! and metrics agree.
//!
//! HTTP attributes follow the OpenTelemetry semantic conventions for HTTP (stable since v1.23); the
//! SDK's own attributes live under `edge.`. The same names are used as `tracing` field names (`tracing`
//! takes dotted names as written: `tracing::debug!(edge.cache.status = "HIT")`).
//!
//! | name | on | value |
//! |---|---|---|
//! | [`HTTP_REQUEST_METHOD`] | server, client | `GET`, `POST`, … (`_OTHER` for methods outside RFC 9110) |
//! | [`HTTP_RESPONSE_STATUS_CODE`] | server, client | the status as an integer |
//! | [`HTTP_ROUTE`] | server | the matched route template, when one is known |
//! | [`URL_PATH`] | server | the request path (never the query: it may carry secrets) |
//! | [`URL_SCHEME`] | server | `http` or `https` |
//! | [`URL_FULL`] | client | the outgoing URL without its query |
//! | [`SERVER_ADDRESS`] | server, client | the `Host` (server) or the upstream host (client) |
//! | [`USER_AGENT_ORIGINAL`] | server | the `User-Agent` field, bounded |
//! | [`CLIENT_ADDRESS`] | server | the client's address, when the host knows it |
//! | [`ERROR_TYPE`] | server, client | why it failed: an error kind, or the status code for 5xx |
//! | [`EDGE_COLO`] | server | the PoP that served the request (`RequestGeo::colo`) |
//! | [`EDGE_CACHE_STATUS`] | server | `HIT`, `MISS`, `STALE`, `UPDATING`, `REVALIDATED`, `EXPIRED`, `BYPASS` |
//! | [`EDGE_CACHE_TIER`] | server | which tier answered (`memory`, `store`, `kv`, `shield`, `origin`) |
//! | [`EDGE_RATELIMIT_DECISION`] | server | `allowed` or `limited` |
//! | [`EDGE_RATELIMIT_POLICY`] | server | the quota's policy name |
//! | [`EDGE_RATELIMIT_REMAINING`] | server | requests left in the window |
//! | [`EDGE_JWT_OUTCOME`] | server | `verified`, `missing`, or the rejection (`expired`, `bad_signature`, …) |
//! | [`EDGE_WAF_VERDICT`] | server | `pass`, `log` or `block` |
//! | [`EDGE_WAF_RULE`] | server | the first rule that matched |
//! | [`EDGE_DO_OBJECT`] | internal | the durable object's id (hex) |
//! | [`EDGE_DO_OUTCOME`] | internal | `ok` or the error kind |
//! | [`EDGE_ESI_FRAGMENT`] | client | the fragment's `src` (reserved for `edge-render`) |

/// HTTP request method (`GET`, …).
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// HTTP response status code, as an integer.
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// The matched route template.
pub const HTTP_ROUTE: &str = "http.route";
/// The request path.
pub const URL_PATH: &str = "url.path";
/// The URL scheme.
pub const URL_SCHEME: &str = "url.scheme";
/// An outgoing request's URL (without its query).
pub const URL_FULL: &str = "url.full";
/// The server's host name.
pub const SERVER_ADDRESS: &str = "server.address";
/// The `User-Agent` field.
pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";
/// The client's address.
pub const CLIENT_ADDRESS: &str = "client.address";
/// Why an operation failed.
pub const ERROR_TYPE: &str = "error.type";
/// The PoP that served the request.
pub const EDGE_COLO: &str = "edge.colo";
/// The HTTP cache's answer.
pub const EDGE_CACHE_STATUS: &str = "edge.cache.status";
/// The cache tier that answered.
pub const EDGE_CACHE_TIER: &str = "edge.cache.tier";
/// The rate limiter's decision.
pub const EDGE_RATELIMIT_DECISION: &str = "edge.ratelimit.decision";
/// The rate-limit policy name.
pub const EDGE_RATELIMIT_POLICY: &str = "edge.ratelimit.policy";
/// Requests left under the rate limit.
pub const EDGE_RATELIMIT_REMAINING: &str = "edge.ratelimit.remaining";
/// The JWT verification's outcome.
pub const EDGE_JWT_OUTCOME: &str = "edge.jwt.outcome";
/// The WAF's verdict.
pub const EDGE_WAF_VERDICT: &str = "edge.waf.verdict";
/// The WAF rule that matched.
pub const EDGE_WAF_RULE: &str = "edge.waf.rule";
/// A durable object's id.
pub const EDGE_DO_OBJECT: &str = "edge.do.object";
/// A durable-object call's outcome.
pub const EDGE_DO_OUTCOME: &str = "edge.do.outcome";
/// An ESI fragment's source.
pub const EDGE_ESI_FRAGMENT: &str = "edge.esi.fragment";

/// The semantic-conventions method value: the method itself for RFC 9110's methods and `PATCH`,
/// `_OTHER` for any other (so a client cannot grow a label set by inventing methods).
#[must_use]
pub fn method_value(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::CONNECT => "CONNECT",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::TRACE => "TRACE",
        http::Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}
