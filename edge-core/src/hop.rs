//! Hop-by-hop fields (RFC 9110 §7.6.1): they describe one connection, not the message, so a proxy or a
//! cache drops them, and the fields `Connection` names with them.

use http::header::{self, HeaderMap, HeaderName};

/// The fields that are hop-by-hop by definition, whatever `Connection` says (RFC 9110 §7.6.1, with the
/// legacy `Proxy-Connection` and the proxy-authentication fields a hop answers for itself).
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The field names the `Connection` fields list (its connection options), skipping any that is not a
/// valid field name.
///
/// ```
/// use edge_core::hop::connection_options;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert(http::header::CONNECTION, "keep-alive, X-Hop".parse().unwrap());
/// let named: Vec<_> = connection_options(&headers).collect();
/// assert_eq!(named, ["keep-alive", "x-hop"]);
/// ```
pub fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
}

/// Removes the fields `Connection` names, then [`HOP_BY_HOP`]: what a proxy does before it forwards a
/// message either way.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_options(headers).collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}
