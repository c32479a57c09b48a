//! One decision type for every limiter, and the response fields it becomes: `RateLimit` and
//! `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-09, March 2025, as RFC 9651 Structured
//! Fields) and `Retry-After` (RFC 9110 §10.2.3); [`Decision`] says exactly what they carry.

use std::fmt::{self, Write as _};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::Quota;

/// `RateLimit`: the quota left under a policy.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Policy`: the quota policy itself.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// What a limiter decided about one request, and the fields it becomes. What they say, exactly:
///
/// - `RateLimit-Policy: "name";q=<burst>;w=<burst × interval, seconds>`. A limiter admitting `limit`
///   requests per `period` with bursts of `burst` refills one request every `interval = period / limit`,
///   so `burst` requests per `burst × interval` is its exact rate and its exact burst at once: 120 a
///   minute with bursts of 20 is `q=20;w=10` (20 every 10 s, 2 a second, 120 a minute). A window that is
///   not whole seconds is rounded up, so a client that keeps to the policy is never refused.
/// - `RateLimit: "name";r=<remaining>;t=<seconds>`: `r` requests could be admitted right now; `t` is
///   when the quota is whole again, or, when refused, when the next request will be admitted, which is
///   also `Retry-After` (the two always agree, and `t` is never 0 on a refusal).
/// - A request costing more than the burst can never be admitted: it is refused as
///   [`Decision::is_impossible`], with no `Retry-After` (a retry would fail the same way).
/// - Several limiters on one request (a global layer and a per-route one) each append their member to
///   the two fields rather than replacing the other's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    /// Set by limiters that count; GCRA-style limiters leave [`DERIVED`] and it is worked out from
    /// `reset` when asked for, so the hot path does not pay for a division nobody may read.
    remaining: u32,
    reset_nanos: u64,
    retry_nanos: u64,
    /// The request costs more than the burst: no wait admits it.
    impossible: bool,
    quota: Quota,
}

/// `remaining` is to be derived from the reset time.
const DERIVED: u32 = u32::MAX;

fn to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Decision {
    /// A decision. `retry_after` is ignored when `allowed`.
    #[must_use]
    pub fn new(
        allowed: bool,
        quota: Quota,
        remaining: u32,
        reset: Duration,
        retry_after: Duration,
    ) -> Self {
        Self {
            allowed,
            remaining: remaining.min(quota.burst()).min(DERIVED - 1),
            reset_nanos: to_nanos(reset),
            retry_nanos: if allowed { 0 } else { to_nanos(retry_after) },
            impossible: false,
            quota,
        }
    }

    /// A refusal of a request that costs more than `quota`'s burst: it can never be admitted.
    #[must_use]
    pub fn impossible(quota: Quota, remaining: u32, reset: Duration) -> Self {
        Self {
            allowed: false,
            remaining: remaining.min(quota.burst()).min(DERIVED - 1),
            reset_nanos: to_nanos(reset),
            retry_nanos: 0,
            impossible: true,
            quota,
        }
    }

    /// The same decision with `remaining` worked out from `ahead_nanos`, as GCRA decisions are.
    pub(crate) fn with_remaining_derived(mut self, ahead_nanos: u64) -> Self {
        self.remaining = DERIVED;
        self.reset_nanos = ahead_nanos;
        self
    }

    /// Whether the request was refused because it costs more than the burst: waiting does not help
    /// (governor's `InsufficientCapacity`).
    #[must_use]
    pub fn is_impossible(&self) -> bool {
        self.impossible
    }

    /// A GCRA decision: `ahead_nanos` is how far the client's schedule runs ahead of now (the time until
    /// the quota is full again); remaining is derived from it when asked for.
    #[inline]
    pub(crate) fn scheduled(
        allowed: bool,
        quota: Quota,
        ahead_nanos: u64,
        retry_nanos: u64,
    ) -> Self {
        Self {
            allowed,
            remaining: DERIVED,
            reset_nanos: ahead_nanos,
            retry_nanos: if allowed { 0 } else { retry_nanos },
            impossible: false,
            quota,
        }
    }

    /// Whether the request may proceed.
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The quota the decision was made under.
    #[must_use]
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Requests that could be admitted right now, after this one.
    #[must_use]
    pub fn remaining(&self) -> u32 {
        if self.remaining != DERIVED {
            return self.remaining;
        }
        let free = self.quota.capacity_nanos().saturating_sub(self.reset_nanos);
        u32::try_from(free / self.quota.interval_nanos())
            .map_or(self.quota.burst(), |n| n.min(self.quota.burst()))
    }

    /// Time until the quota is fully restored, if no more requests arrive.
    #[must_use]
    pub fn reset(&self) -> Duration {
        Duration::from_nanos(self.reset_nanos)
    }

    /// For a denied request, how long until the same request would be admitted; zero when allowed.
    #[must_use]
    pub fn retry_after(&self) -> Duration {
        Duration::from_nanos(self.retry_nanos)
    }

    /// Seconds the `t` parameter and `Retry-After` say: on a refusal, until the next request is admitted
    /// (at least 1); otherwise until the quota is whole again.
    fn t_seconds(&self) -> u64 {
        if self.allowed || self.impossible {
            ceil_secs(self.reset())
        } else {
            ceil_secs(self.retry_after()).max(1)
        }
    }

    /// `"name";r=<remaining>;t=<seconds>` (see [`Decision`]).
    #[must_use]
    pub fn ratelimit_value(&self) -> HeaderValue {
        named_value(
            self.quota.name(),
            format_args!(";r={};t={}", self.remaining(), self.t_seconds()),
        )
    }

    /// `"name";q=<burst>;w=<burst × interval, seconds, rounded up>`: the quota's exact rate and burst
    /// (see [`Decision`]).
    #[must_use]
    pub fn policy_value(&self) -> HeaderValue {
        let window = Duration::from_nanos(self.quota.capacity_nanos());
        named_value(
            self.quota.name(),
            format_args!(";q={};w={}", self.quota.burst(), ceil_secs(window).max(1)),
        )
    }

    /// Appends this limiter's members to `RateLimit` and `RateLimit-Policy` (after any another limiter
    /// wrote) and, when refused with a wait that helps, sets `Retry-After` to the same seconds as `t`
    /// (the longest wait wins when several limiters refuse).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.append(RATELIMIT, self.ratelimit_value());
        headers.append(RATELIMIT_POLICY, self.policy_value());
        if !self.allowed && !self.impossible {
            let seconds = self.t_seconds();
            let earlier = headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(seconds.max(earlier)),
            );
        }
    }
}

/// Whole seconds, rounded up: a client told "0" would retry too early.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `name` as a Structured Fields string (`"` and `\` escaped; names are printable ASCII, checked by
/// [`Quota`]) followed by `parameters`, written into one buffer that becomes the value without a copy.
fn named_value(name: &str, parameters: fmt::Arguments<'_>) -> HeaderValue {
    let mut out = String::with_capacity(name.len() + 32);
    out.push('"');
    for c in name.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    let _ = out.write_fmt(parameters);
    // Printable ASCII by construction; the fallback keeps a bug from becoming a panic.
    HeaderValue::try_from(out).unwrap_or_else(|_| HeaderValue::from_static("\"default\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_draft_and_round_up() {
        let quota = Quota::per_minute(std::num::NonZeroU32::new(100).unwrap())
            .with_name("api")
            .unwrap();
        let d = Decision::new(
            false,
            quota,
            0,
            Duration::from_millis(1500),
            Duration::from_millis(200),
        );
        let mut headers = HeaderMap::new();
        d.write_headers(&mut headers);
        assert_eq!(
            headers["ratelimit"], "\"api\";r=0;t=1",
            "t is the Retry-After on a refusal"
        );
        assert_eq!(headers["ratelimit-policy"], "\"api\";q=100;w=60");
        assert_eq!(headers["retry-after"], "1");
        // 120 a minute in bursts of 20: 20 every 10 s.
        let bursty = Quota::per_minute(std::num::NonZeroU32::new(120).unwrap())
            .with_burst(20)
            .unwrap();
        let d = Decision::new(true, bursty, 19, Duration::from_millis(500), Duration::ZERO);
        assert_eq!(d.policy_value(), "\"default\";q=20;w=10");
        // 100 a minute in bursts of 7: 7 every 4.2 s, announced as 7 every 5 s (never refused).
        let odd = Quota::per_minute(std::num::NonZeroU32::new(100).unwrap())
            .with_burst(7)
            .unwrap();
        let d = Decision::new(true, odd, 6, Duration::ZERO, Duration::ZERO);
        assert_eq!(d.policy_value(), "\"default\";q=7;w=5");
        // A refusal a few nanoseconds from its slot still says 1 s, never 0.
        let d = Decision::new(
            false,
            bursty,
            0,
            Duration::from_nanos(3),
            Duration::from_nanos(3),
        );
        assert_eq!(d.ratelimit_value(), "\"default\";r=0;t=1");
        // An impossible request: no Retry-After.
        let mut headers = HeaderMap::new();
        Decision::impossible(bursty, 20, Duration::ZERO).write_headers(&mut headers);
        assert!(headers.get("retry-after").is_none());
        // Stacked limiters append.
        let mut headers = HeaderMap::new();
        Decision::new(true, bursty, 3, Duration::from_secs(4), Duration::ZERO)
            .write_headers(&mut headers);
        Decision::new(
            false,
            quota,
            0,
            Duration::from_secs(9),
            Duration::from_secs(2),
        )
        .write_headers(&mut headers);
        let lines: Vec<_> = headers.get_all("ratelimit").iter().collect();
        assert_eq!(lines, ["\"default\";r=3;t=4", "\"api\";r=0;t=2"]);
        assert_eq!(headers["retry-after"], "2");
        let odd = Quota::per_second(std::num::NonZeroU32::new(1).unwrap())
            .with_name("a\"b\\c")
            .unwrap();
        let d = Decision::new(true, odd, 0, Duration::ZERO, Duration::from_secs(9));
        assert_eq!(d.policy_value(), "\"a\\\"b\\\\c\";q=1;w=1");
        assert_eq!(
            d.retry_after(),
            Duration::ZERO,
            "allowed requests have no retry-after"
        );
    }
}
