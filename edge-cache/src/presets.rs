//! Named cache policies (static-immutable … html-dynamic), as data, and the headers each one produces.
//!
//! | preset | edge | browser | stale-while-revalidate | stale-if-error | tags |
//! |---|---|---|---|---|---|
//! | `static-immutable` | 1 year | 1 year, `immutable` | — | 1 day | `static` |
//! | `static-versioned` | 1 day | 1 hour | 1 day | 7 days | `static`, `versioned` |
//! | `api-public` | 1 minute | — | 5 minutes | 1 hour | `api` |
//! | `api-personalized` | — | — | — | 1 minute | `api`, `personalized` |
//! | `html-dynamic` | — | — | 1 minute | 5 minutes | `html`, `dynamic` |
//!
//! The edge's lifetime and stale windows go in `Surrogate-Control` (which this crate's policy reads in
//! place of `Cache-Control` and strips before the response leaves); the browser's in `Cache-Control`.
//! One correction to the common recipe: its stale windows went only into `Cache-Control`, where an edge that
//! honours `Surrogate-Control` never sees them; here the edge's copy carries them too.
//!
//! ```
//! use edge_cache::presets::Preset;
//!
//! let headers = Preset::named("api-public").unwrap().headers();
//! assert_eq!(headers["surrogate-control"], "max-age=60, stale-while-revalidate=300, stale-if-error=3600");
//! assert_eq!(headers["cache-control"], "private, no-store");
//! assert_eq!(headers["cache-tag"], "api");
//! ```

use std::fmt::Write;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};

use crate::policy::{CACHE_TAG, SURROGATE_CONTROL};

/// A named cache policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Preset {
    /// Its name.
    pub name: &'static str,
    /// How long the edge keeps it fresh (zero: not stored at the edge).
    pub edge: Duration,
    /// How long browsers keep it fresh (zero: `private, no-store`).
    pub browser: Duration,
    /// `stale-while-revalidate`.
    pub stale_while_revalidate: Duration,
    /// `stale-if-error`.
    pub stale_if_error: Duration,
    /// Whether the content never changes under its URL (`immutable`).
    pub immutable: bool,
    /// Tags for purging.
    pub tags: &'static [&'static str],
}

const DAY: u64 = 86_400;

/// Fingerprinted assets: a year everywhere.
pub const STATIC_IMMUTABLE: Preset = Preset {
    name: "static-immutable",
    edge: Duration::from_secs(365 * DAY),
    browser: Duration::from_secs(365 * DAY),
    stale_while_revalidate: Duration::ZERO,
    stale_if_error: Duration::from_secs(DAY),
    immutable: true,
    tags: &["static"],
};

/// Assets under a stable URL: a day at the edge, an hour in browsers.
pub const STATIC_VERSIONED: Preset = Preset {
    name: "static-versioned",
    edge: Duration::from_secs(DAY),
    browser: Duration::from_secs(3_600),
    stale_while_revalidate: Duration::from_secs(DAY),
    stale_if_error: Duration::from_secs(7 * DAY),
    immutable: false,
    tags: &["static", "versioned"],
};

/// Public API responses: a minute at the edge, refreshed in the background.
pub const API_PUBLIC: Preset = Preset {
    name: "api-public",
    edge: Duration::from_secs(60),
    browser: Duration::ZERO,
    stale_while_revalidate: Duration::from_secs(300),
    stale_if_error: Duration::from_secs(3_600),
    immutable: false,
    tags: &["api"],
};

/// Per-user API responses: never shared.
pub const API_PERSONALIZED: Preset = Preset {
    name: "api-personalized",
    edge: Duration::ZERO,
    browser: Duration::ZERO,
    stale_while_revalidate: Duration::ZERO,
    stale_if_error: Duration::from_secs(60),
    immutable: false,
    tags: &["api", "personalized"],
};

/// Server-rendered HTML: not stored.
pub const HTML_DYNAMIC: Preset = Preset {
    name: "html-dynamic",
    edge: Duration::ZERO,
    browser: Duration::ZERO,
    stale_while_revalidate: Duration::from_secs(60),
    stale_if_error: Duration::from_secs(300),
    immutable: false,
    tags: &["html", "dynamic"],
};

/// Every preset.
pub const ALL: [Preset; 5] = [
    STATIC_IMMUTABLE,
    STATIC_VERSIONED,
    API_PUBLIC,
    API_PERSONALIZED,
    HTML_DYNAMIC,
];

fn stale(out: &mut String, swr: Duration, sie: Duration) {
    if !swr.is_zero() {
        let _ = write!(out, ", stale-while-revalidate={}", swr.as_secs());
    }
    if !sie.is_zero() {
        let _ = write!(out, ", stale-if-error={}", sie.as_secs());
    }
}

impl Preset {
    /// The preset called `name`.
    #[must_use]
    pub fn named(name: &str) -> Option<Self> {
        ALL.into_iter().find(|p| p.name == name)
    }

    /// The `Surrogate-Control` value (for the edge), if the edge stores it.
    #[must_use]
    pub fn surrogate_control(&self) -> Option<String> {
        if self.edge.is_zero() {
            return None;
        }
        let mut value = format!("max-age={}", self.edge.as_secs());
        stale(&mut value, self.stale_while_revalidate, self.stale_if_error);
        Some(value)
    }

    /// The `Cache-Control` value (for browsers).
    #[must_use]
    pub fn cache_control(&self) -> String {
        if self.browser.is_zero() {
            return "private, no-store".to_owned();
        }
        let mut value = format!("public, max-age={}", self.browser.as_secs());
        if self.immutable {
            value.push_str(", immutable");
        }
        stale(&mut value, self.stale_while_revalidate, self.stale_if_error);
        value
    }

    /// The three headers: `Surrogate-Control` (if the edge stores it), `Cache-Control`, `Cache-Tag`.
    #[must_use]
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        self.apply(&mut headers);
        headers
    }

    /// Sets this preset's headers on `headers`, replacing any it had.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.remove(&SURROGATE_CONTROL);
        if let Some(value) = self
            .surrogate_control()
            .and_then(|v| HeaderValue::try_from(v).ok())
        {
            headers.insert(SURROGATE_CONTROL.clone(), value);
        }
        if let Ok(value) = HeaderValue::try_from(self.cache_control()) {
            headers.insert(header::CACHE_CONTROL, value);
        }
        if let Ok(value) = HeaderValue::try_from(self.tags.join(",")) {
            headers.insert(CACHE_TAG.clone(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use http::{Method, StatusCode};

    use super::*;
    use crate::policy::CachePolicy;

    #[test]
    fn presets_produce_what_the_policy_then_does() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let stored = |p: &Preset| {
            let mut h = p.headers();
            CachePolicy::new().store(
                &Method::GET,
                &HeaderMap::new(),
                StatusCode::OK,
                &mut h,
                t0,
                t0,
            )
        };
        assert_eq!(
            stored(&STATIC_IMMUTABLE).unwrap().lifetime,
            STATIC_IMMUTABLE.edge
        );
        assert_eq!(
            STATIC_IMMUTABLE.cache_control(),
            "public, max-age=31536000, immutable, stale-if-error=86400"
        );
        let versioned = stored(&STATIC_VERSIONED).unwrap();
        // A day fresh, a week of stale-while-revalidate, then the policy's keep_stale.
        assert_eq!(versioned.keep_for, Duration::from_secs(DAY + 7 * DAY + 600));
        assert!(stored(&API_PUBLIC).is_ok());
        assert!(
            stored(&API_PERSONALIZED).is_err(),
            "never stored at the edge"
        );
        assert!(stored(&HTML_DYNAMIC).is_err());
        assert_eq!(Preset::named("html-dynamic"), Some(HTML_DYNAMIC));
        assert_eq!(Preset::named("nope"), None);
        assert_eq!(STATIC_VERSIONED.headers()["cache-tag"], "static,versioned");
    }
}
