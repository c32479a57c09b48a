//! What the layers label requests by: the route (axum's matched template), the cache status, the PoP. Each
//! comes from a fixed or bounded set, so a label set cannot grow from request data.

/// The route template axum matched (feature `axum`), when the layer runs inside the router.
pub(crate) fn matched_path<B>(request: &http::Request<B>) -> Option<&str> {
    #[cfg(feature = "axum")]
    if let Some(matched) = request.extensions().get::<axum::extract::MatchedPath>() {
        return Some(matched.as_str());
    }
    let _ = request;
    None
}

/// What the HTTP cache did, from the fixed set it writes (`OTHER` for anything else, `NONE` when it
/// says nothing), so a label set cannot grow from it: its legacy `x-cache-status`, else the last member
/// of the standard `Cache-Status` (RFC 9211).
pub(crate) fn cache_status(headers: &http::HeaderMap) -> &'static str {
    if let Some(legacy) = headers.get("x-cache-status") {
        return match legacy.to_str().unwrap_or("") {
            "HIT" => "HIT",
            "MISS" => "MISS",
            "STALE" => "STALE",
            "UPDATING" => "UPDATING",
            "REVALIDATED" => "REVALIDATED",
            "EXPIRED" => "EXPIRED",
            "BYPASS" => "BYPASS",
            _ => "OTHER",
        };
    }
    let Some(member) = headers
        .get_all("cache-status")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
    else {
        return "NONE";
    };
    let has = |parameter: &str| member.split(';').any(|p| p.trim() == parameter);
    if has("detail=stale-while-revalidate") {
        "UPDATING"
    } else if has("detail=stale-if-error") {
        "STALE"
    } else if has("hit") {
        "HIT"
    } else if has("fwd=method") {
        "BYPASS"
    } else if has("fwd=stale") && has("fwd-status=304") {
        "REVALIDATED"
    } else if has("fwd=stale") {
        "EXPIRED"
    } else if member.contains("fwd=") {
        "MISS"
    } else {
        "OTHER"
    }
}

#[cfg(test)]
mod cache_status_tests {
    use super::cache_status;

    #[test]
    fn legacy_field_first_then_the_standard_one() {
        let read = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = http::HeaderMap::new();
            for (name, value) in pairs {
                headers.append(*name, http::HeaderValue::from_static(value));
            }
            cache_status(&headers)
        };
        assert_eq!(read(&[]), "NONE");
        assert_eq!(
            read(&[
                ("x-cache-status", "HIT"),
                ("cache-status", "edge; fwd=uri-miss")
            ]),
            "HIT"
        );
        assert_eq!(read(&[("x-cache-status", "weird")]), "OTHER");
        for (member, expected) in [
            ("edge; hit; ttl=50", "HIT"),
            (
                "edge; hit; ttl=-3; detail=stale-while-revalidate",
                "UPDATING",
            ),
            ("edge; fwd=stale; detail=stale-if-error", "STALE"),
            ("edge; fwd=stale; fwd-status=304; stored", "REVALIDATED"),
            ("edge; fwd=stale; fwd-status=200; stored", "EXPIRED"),
            ("edge; fwd=uri-miss; fwd-status=200", "MISS"),
            ("edge; fwd=method; fwd-status=204", "BYPASS"),
            ("origin-cache; hit, edge; fwd=uri-miss", "MISS"),
            ("edge; detail=only-if-cached", "OTHER"),
        ] {
            assert_eq!(read(&[("cache-status", member)]), expected, "{member}");
        }
    }
}

/// A colo label: three to five upper-case ASCII letters, or `NONE`, held inline (no allocation per
/// request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Colo {
    bytes: [u8; 5],
    len: u8,
}

impl Colo {
    const NONE: Self = Self {
        bytes: *b"NONE\0",
        len: 4,
    };

    /// Three to five ASCII letters, upper-cased; anything else is not a colo.
    fn parse(code: &str) -> Option<Self> {
        let code = code.trim();
        if !(3..=5).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        let mut bytes = [0u8; 5];
        for (slot, b) in bytes.iter_mut().zip(code.bytes()) {
            *slot = b.to_ascii_uppercase();
        }
        // The length was checked to be 3 to 5 above.
        #[allow(clippy::cast_possible_truncation)]
        let len = code.len() as u8;
        Some(Self { bytes, len })
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII letters (or `NONE`) are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("NONE")
    }

    pub(crate) fn is_none(self) -> bool {
        self == Self::NONE
    }
}

/// The PoP that served the request: a [`RequestGeo`](edge_core::RequestGeo) in the extensions (the workers
/// adapter puts one there), else `x-edge-colo` or the suffix of `cf-ray` (three to five ASCII letters, as
/// `RequestGeo` reads them); `NONE` when neither says.
pub(crate) fn colo<B>(request: &http::Request<B>) -> Colo {
    if let Some(colo) = request
        .extensions()
        .get::<edge_core::RequestGeo>()
        .and_then(|geo| geo.colo.as_deref())
        .and_then(Colo::parse)
    {
        return colo;
    }
    let from_header = |name: &str| {
        let value = request.headers().get(name)?.to_str().ok()?;
        Colo::parse(value.rsplit('-').next().unwrap_or(value))
    };
    from_header("x-edge-colo")
        .or_else(|| from_header("cf-ray"))
        .unwrap_or(Colo::NONE)
}
