//! One decision type for every limiter, and the response fields it becomes: `RateLimit` and
//! `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers, as RFC 9651 Structured Fields) and
//! `Retry-After` (RFC 9110 §10.2.3).

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::Quota;

/// `RateLimit`: the quota left under a policy.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Policy`: the quota policy itself.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// What a limiter decided about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    /// Set by limiters that count; GCRA-style limiters leave [`DERIVED`] and it is worked out from
    /// `reset` when asked for, so the hot path does not pay for a division nobody may read.
    remaining: u32,
    reset_nanos: u64,
    retry_nanos: u64,
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
            quota,
        }
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

    /// `"name";r=<remaining>;t=<seconds until reset>`.
    #[must_use]
    pub fn ratelimit_value(&self) -> HeaderValue {
        let value = format!(
            "\"{}\";r={};t={}",
            escaped(self.quota.name()),
            self.remaining(),
            ceil_secs(self.reset())
        );
        header_value(&value)
    }

    /// `"name";q=<burst>;w=<window seconds>`: the number of requests a client may make in one window.
    #[must_use]
    pub fn policy_value(&self) -> HeaderValue {
        let value = format!(
            "\"{}\";q={};w={}",
            escaped(self.quota.name()),
            self.quota.burst(),
            ceil_secs(self.quota.period()),
        );
        header_value(&value)
    }

    /// Adds `RateLimit`, `RateLimit-Policy` and, when denied, `Retry-After` (whole seconds, rounded up).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT, self.ratelimit_value());
        headers.insert(RATELIMIT_POLICY, self.policy_value());
        if !self.allowed {
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(ceil_secs(self.retry_after()).max(1)),
            );
        }
    }
}

/// Whole seconds, rounded up: a client told "0" would retry too early.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A Structured Fields string body: `"` and `\` escaped (names are printable ASCII, checked by [`Quota`]).
fn escaped(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn header_value(value: &str) -> HeaderValue {
    // Printable ASCII by construction; the fallback keeps a bug from becoming a panic.
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("\"default\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_draft_and_round_up() {
        let quota = Quota::per_minute(100).unwrap().with_name("api").unwrap();
        let d = Decision::new(
            false,
            quota,
            0,
            Duration::from_millis(1500),
            Duration::from_millis(200),
        );
        let mut headers = HeaderMap::new();
        d.write_headers(&mut headers);
        assert_eq!(headers["ratelimit"], "\"api\";r=0;t=2");
        assert_eq!(headers["ratelimit-policy"], "\"api\";q=100;w=60");
        assert_eq!(headers["retry-after"], "1");
        let odd = Quota::per_second(1).unwrap().with_name("a\"b\\c").unwrap();
        let d = Decision::new(true, odd, 0, Duration::ZERO, Duration::from_secs(9));
        assert_eq!(d.policy_value(), "\"a\\\"b\\\\c\";q=1;w=1");
        assert_eq!(
            d.retry_after(),
            Duration::ZERO,
            "allowed requests have no retry-after"
        );
    }
}
