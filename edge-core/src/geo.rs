//! Where a request comes from: the client's address ([`ClientIp`]); country, region, city and the edge
//! location (colo) that received it.
//!
//! On Cloudflare this comes from the request's `cf` object (the `workers` adapter fills it). On native hosts
//! it comes from the headers a CDN or load balancer in front adds; [`RequestGeo::from_headers`] reads the
//! common ones. Everything is optional and validated: a malformed or oversized header is ignored, never an
//! error, because geo data only ever steers a default.

use std::net::IpAddr;

use http::HeaderMap;

/// The client's address, as the host saw the connection, in the request's extensions: per-client rate
/// limits and the WAF's penalties key on it. `host::tokio::serve` inserts it from the
/// accepted stream's peer address; a Worker from `CF-Connecting-IP` (which Cloudflare sets and a client
/// cannot); an axum app served by `axum::serve` from `ConnectInfo<SocketAddr>`. Behind a proxy of your
/// own, key on the forwarded address instead (edge-auth's `KeyExtractor::client_ip_behind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// The longest region or city name kept.
const MAX_NAME_LEN: usize = 64;

/// A request's location, as far as the edge knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RequestGeo {
    /// ISO 3166-1 alpha-2 country code, upper case (`"DE"`), or Cloudflare's `XX` (unknown) / `T1` (Tor).
    pub country: Option<String>,
    /// Region or subdivision (`"BY"`, `"California"`).
    pub region: Option<String>,
    /// City name.
    pub city: Option<String>,
    /// The edge location that received the request, as an IATA-style code (`"FRA"`).
    pub colo: Option<String>,
}

/// Header names read by [`RequestGeo::from_headers`], in order of preference.
const COUNTRY: [&str; 5] = [
    "cf-ipcountry",
    "cloudfront-viewer-country",
    "x-vercel-ip-country",
    "fastly-geo-country",
    "x-country-code",
];
const REGION: [&str; 3] = [
    "cloudfront-viewer-country-region",
    "x-vercel-ip-country-region",
    "x-region",
];
const CITY: [&str; 3] = ["cloudfront-viewer-city", "x-vercel-ip-city", "x-city"];
const COLO: [&str; 2] = ["x-edge-colo", "cf-ray"];

impl RequestGeo {
    /// An empty location.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            country: None,
            region: None,
            city: None,
            colo: None,
        }
    }

    /// Sets the country (validated: two ASCII letters or digits, upper-cased; anything else is dropped).
    #[must_use]
    pub fn with_country(mut self, country: &str) -> Self {
        self.country = country_code(country);
        self
    }

    /// Sets the colo (validated: three to five ASCII letters, upper-cased).
    #[must_use]
    pub fn with_colo(mut self, colo: &str) -> Self {
        self.colo = colo_code(colo);
        self
    }

    /// A geo from platform fields (the `workers` adapter's `cf` object), each validated as
    /// [`from_headers`](Self::from_headers) validates header values.
    #[must_use]
    pub fn from_parts(
        country: Option<&str>,
        region: Option<&str>,
        city: Option<&str>,
        colo: Option<&str>,
    ) -> Self {
        Self {
            country: country.and_then(country_code),
            region: region.and_then(place_name),
            city: city.and_then(place_name),
            colo: colo.and_then(colo_code),
        }
    }

    /// Reads the location from the headers of common CDNs and load balancers: `cf-ipcountry`,
    /// `cloudfront-viewer-country`, `x-vercel-ip-country`, `fastly-geo-country`, `x-country-code`; region and
    /// city from CloudFront's and Vercel's headers (or `x-region` / `x-city`); the colo from `x-edge-colo` or
    /// the suffix of `cf-ray` (`8f1c…-FRA`). Percent-encoded city names (Vercel) are decoded.
    #[must_use]
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let first = |names: &[&str], parse: fn(&str) -> Option<String>| {
            names
                .iter()
                .find_map(|name| headers.get(*name)?.to_str().ok().and_then(parse))
        };
        Self {
            country: first(&COUNTRY, country_code),
            region: first(&REGION, place_name),
            city: first(&CITY, place_name),
            colo: first(&COLO, |v| colo_code(v.rsplit('-').next().unwrap_or(v))),
        }
    }
}

fn country_code(raw: &str) -> Option<String> {
    let raw = raw.trim();
    (raw.len() == 2 && raw.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| raw.to_ascii_uppercase())
}

fn colo_code(raw: &str) -> Option<String> {
    let raw = raw.trim();
    ((3..=5).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| raw.to_ascii_uppercase())
}

fn place_name(raw: &str) -> Option<String> {
    let decoded = percent_decode(raw.trim())?;
    (!decoded.is_empty() && decoded.len() <= MAX_NAME_LEN && !decoded.chars().any(char::is_control))
        .then_some(decoded)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or invalid UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    if !raw.contains('%') {
        return Some(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex)
                .ok()
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn reads_common_cdn_headers() {
        let geo = RequestGeo::from_headers(&headers(&[
            ("cf-ipcountry", "de"),
            ("x-vercel-ip-city", "M%C3%BCnchen"),
            ("x-vercel-ip-country-region", "BY"),
            ("cf-ray", "8f1c2d3e4f5a6b7c-fra"),
        ]));
        assert_eq!(geo.country.as_deref(), Some("DE"));
        assert_eq!(geo.city.as_deref(), Some("München"));
        assert_eq!(geo.region.as_deref(), Some("BY"));
        assert_eq!(geo.colo.as_deref(), Some("FRA"));
        assert_eq!(
            RequestGeo::from_headers(&HeaderMap::new()),
            RequestGeo::new()
        );
    }

    #[test]
    fn malformed_values_are_ignored() {
        let geo = RequestGeo::from_headers(&headers(&[
            ("cf-ipcountry", "Germany"),
            ("cloudfront-viewer-country", "FR"),
            ("x-city", "%ZZbad"),
            ("x-edge-colo", "fr4nkfurt"),
        ]));
        assert_eq!(
            geo.country.as_deref(),
            Some("FR"),
            "falls through to the next valid header"
        );
        assert_eq!(geo.city, None);
        assert_eq!(geo.colo, None);
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%e2%82"), None, "invalid utf-8");
    }
}
