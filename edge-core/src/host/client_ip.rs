//! [`SetClientIpLayer`]: the client's address as [`ClientIp`], from the connection and the proxies you trust.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HeaderName;
use http::{HeaderMap, Request};

use crate::{ClientIp, Error, ErrorKind};

/// Address blocks whose forwarded-for entries are believed: your load balancers and CDN.
///
/// An entry is an address (`10.1.2.3`, `::1`) or a CIDR block (`10.0.0.0/8`, `fd00::/8`).
///
/// ```
/// use edge_core::host::TrustedProxies;
///
/// let trusted = TrustedProxies::new(["10.0.0.0/8", "2001:db8::/32", "127.0.0.1"]).unwrap();
/// assert!(trusted.contains("10.9.8.7".parse().unwrap()));
/// assert!(!trusted.contains("11.0.0.1".parse().unwrap()));
/// assert!(TrustedProxies::new(["10.0.0.0/33"]).is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    blocks: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Trusts no proxy: the connection's address is the client's.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Loopback, private (RFC 1918, RFC 4193) and link-local blocks: a load balancer in the same network.
    #[must_use]
    pub fn private_networks() -> Self {
        let blocks = [
            "127.0.0.0/8",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "169.254.0.0/16",
            "::1/128",
            "fc00::/7",
            "fe80::/10",
        ];
        Self {
            blocks: blocks.iter().filter_map(|b| parse_block(b).ok()).collect(),
        }
    }

    /// Trusts each of `blocks`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for an entry that is not an address or a CIDR block.
    pub fn new(blocks: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self, Error> {
        let blocks = blocks
            .into_iter()
            .map(|b| parse_block(b.as_ref().trim()))
            .collect::<Result<_, _>>()?;
        Ok(Self { blocks })
    }

    /// Whether `ip` is in one of the blocks (an IPv4-mapped IPv6 address counts as its IPv4 one).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.blocks
            .iter()
            .any(|&(network, bits)| in_block(ip, network, bits))
    }

    fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

fn parse_block(text: &str) -> Result<(IpAddr, u8), Error> {
    let invalid = || {
        Error::new(
            ErrorKind::InvalidInput,
            format!("not an address or CIDR block: {text:?}"),
        )
    };
    let (address, bits) = match text.split_once('/') {
        Some((address, bits)) => (address, Some(bits)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().map_err(|_| invalid())?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(bits) => bits.parse::<u8>().map_err(|_| invalid())?,
        None => max,
    };
    if bits > max {
        return Err(invalid());
    }
    Ok((address.to_canonical(), bits))
}

fn in_block(ip: IpAddr, network: IpAddr, bits: u8) -> bool {
    let prefix = |value: u128, width: u32| {
        let bits = u32::from(bits);
        if bits == 0 {
            0
        } else {
            value >> (width - bits)
        }
    };
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            prefix(u128::from(u32::from(ip)), 32) == prefix(u128::from(u32::from(net)), 32)
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            prefix(u128::from(ip), 128) == prefix(u128::from(net), 128)
        }
        _ => false,
    }
}

/// Puts the client's address in each request's extensions as [`ClientIp`], for per-client rate limits,
/// the WAF's penalties and [`OriginProxy`](super::OriginProxy)'s `Forwarded`.
///
/// The connection's address comes from the host: `edge_core::host::tokio::serve` and the Workers
/// adapter insert [`ClientIp`] themselves; an axum app served with
/// `into_make_service_with_connect_info::<SocketAddr>()` has `ConnectInfo<SocketAddr>`, read with feature
/// `axum`; a bare hyper server inserts [`ClientIp`] from its accept loop's remote address.
///
/// When that address is a [trusted proxy](TrustedProxies), the forwarded-for header (`X-Forwarded-For`
/// unless [`header`](Self::header) says otherwise) is read from the right: each entry a trusted proxy
/// wrote is skipped, and the first one that is not trusted is the client. Entries further left were
/// written by the client and are never believed. A request without any address is left without one:
/// the rate limiter then does what you chose for unkeyed requests, rather than guessing.
///
/// ```
/// use std::convert::Infallible;
/// use edge_core::ClientIp;
/// use edge_core::host::{SetClientIpLayer, TrustedProxies};
/// use tower::{Layer, ServiceExt};
///
/// let app = tower::service_fn(|request: http::Request<()>| async move {
///     Ok::<_, Infallible>(request.extensions().get::<ClientIp>().copied())
/// });
/// let app = SetClientIpLayer::new()
///     .trust(TrustedProxies::new(["10.0.0.0/8"]).unwrap())
///     .layer(app);
/// let mut request = http::Request::get("/")
///     .header("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2")
///     .body(())
///     .unwrap();
/// request.extensions_mut().insert(ClientIp([10, 0, 0, 1].into())); // the load balancer
/// # futures::executor::block_on(async {
/// let seen = app.oneshot(request).await.unwrap();
/// assert_eq!(seen, Some(ClientIp([203, 0, 113, 9].into())));
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SetClientIpLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    trusted: TrustedProxies,
    header: HeaderName,
}

impl Default for SetClientIpLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SetClientIpLayer {
    /// The connection's address, trusting no proxy.
    #[must_use]
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                trusted: TrustedProxies::none(),
                header: HeaderName::from_static("x-forwarded-for"),
            }),
        }
    }

    /// Believes the forwarded-for entries written by `proxies`.
    #[must_use]
    pub fn trust(self, proxies: TrustedProxies) -> Self {
        Self {
            shared: Arc::new(Shared {
                trusted: proxies,
                header: self.shared.header.clone(),
            }),
        }
    }

    /// Reads the forwarded-for list from `header` (`X-Forwarded-For` by default; `X-Real-IP`, or a CDN's
    /// own, hold a one-entry list). With `Forwarded` (RFC 7239) each element's `for=` is read: quoted or
    /// not, IPv6 in brackets, a port dropped; an obfuscated or `unknown` node ends the walk.
    #[must_use]
    pub fn header(self, header: HeaderName) -> Self {
        Self {
            shared: Arc::new(Shared {
                trusted: self.shared.trusted.clone(),
                header,
            }),
        }
    }

    /// The client behind `peer` as the headers tell it (see the type's docs).
    #[must_use]
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = &self.shared.trusted;
        if trusted.is_empty() || !trusted.contains(peer) {
            return peer;
        }
        let mut client = peer;
        let rfc7239 = self.shared.header == http::header::FORWARDED;
        let entries = headers
            .get_all(&self.shared.header)
            .iter()
            .rev()
            .flat_map(|value| value.to_str().unwrap_or("").rsplit(','));
        for entry in entries {
            let entry = if rfc7239 {
                forwarded_for(entry)
            } else {
                Some(entry.trim())
            };
            let Some(ip) = entry.and_then(parse_entry) else {
                break;
            };
            client = ip;
            if !trusted.contains(ip) {
                break;
            }
        }
        client
    }
}

/// The node of a `Forwarded` element's `for=` parameter, unquoted (RFC 7239 §4, §6).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        Some(
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value),
        )
    })
}

/// An address as proxies write it: bare, `[v6]`, or with a port (`1.2.3.4:5678`, `[v6]:5678`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    entry
        .parse::<SocketAddr>()
        .ok()
        .map(|s| s.ip())
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse().ok())
        })
}

impl<S> tower_layer::Layer<S> for SetClientIpLayer {
    type Service = SetClientIp<S>;

    fn layer(&self, inner: S) -> SetClientIp<S> {
        SetClientIp {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`SetClientIpLayer`] makes.
#[derive(Clone, Debug)]
pub struct SetClientIp<S> {
    inner: S,
    layer: SetClientIpLayer,
}

impl<S, B> tower_service::Service<Request<B>> for SetClientIp<S>
where
    S: tower_service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        if let Some(peer) = peer(request.extensions()) {
            let client = self.layer.resolve(peer, request.headers());
            request.extensions_mut().insert(ClientIp(client));
        }
        self.inner.call(request)
    }
}

fn peer(extensions: &http::Extensions) -> Option<IpAddr> {
    if let Some(ip) = extensions.get::<ClientIp>() {
        return Some(ip.0);
    }
    #[cfg(all(feature = "axum", not(target_arch = "wasm32")))]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn resolve(layer: &SetClientIpLayer, peer: &str, xff: &[&str]) -> IpAddr {
        let mut headers = HeaderMap::new();
        for value in xff {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        layer.resolve(peer.parse().unwrap(), &headers)
    }

    #[test]
    fn walks_forwarded_for_from_the_right_through_trusted_hops_only() {
        let none = SetClientIpLayer::new();
        assert_eq!(
            resolve(&none, "10.0.0.1", &["1.2.3.4"]).to_string(),
            "10.0.0.1"
        );
        let layer = SetClientIpLayer::new().trust(TrustedProxies::private_networks());
        let cases: &[(&str, &[&str], &str)] = &[
            ("10.0.0.1", &["1.2.3.4"], "1.2.3.4"),
            ("10.0.0.1", &["6.6.6.6, 1.2.3.4, 192.168.0.9"], "1.2.3.4"),
            ("10.0.0.1", &["6.6.6.6", "1.2.3.4"], "1.2.3.4"),
            ("10.0.0.1", &[], "10.0.0.1"),
            ("10.0.0.1", &["garbage, 10.0.0.5"], "10.0.0.5"),
            ("10.0.0.1", &["1.2.3.4, garbage"], "10.0.0.1"),
            ("10.0.0.1", &["[2001:db8::7]:443"], "2001:db8::7"),
            ("10.0.0.1", &["1.2.3.4:5678"], "1.2.3.4"),
            ("::ffff:10.0.0.1", &["1.2.3.4"], "1.2.3.4"),
            ("203.0.113.1", &["1.2.3.4"], "203.0.113.1"),
        ];
        for (peer, xff, expected) in cases {
            assert_eq!(
                &resolve(&layer, peer, xff).to_string(),
                expected,
                "{peer} {xff:?}"
            );
        }
    }

    #[test]
    fn reads_rfc_7239_forwarded_too() {
        let layer = SetClientIpLayer::new()
            .trust(TrustedProxies::private_networks())
            .header(http::header::FORWARDED);
        let resolve = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(http::header::FORWARDED, value.parse().unwrap());
            }
            layer
                .resolve("10.0.0.1".parse().unwrap(), &headers)
                .to_string()
        };
        assert_eq!(
            resolve(&["for=192.0.2.60;proto=http;by=203.0.113.43"]),
            "192.0.2.60"
        );
        assert_eq!(
            resolve(&["For=\"[2001:db8:cafe::17]:4711\""]),
            "2001:db8:cafe::17"
        );
        assert_eq!(
            resolve(&["for=6.6.6.6, for=198.51.100.17;proto=https, for=10.0.0.7"]),
            "198.51.100.17"
        );
        assert_eq!(
            resolve(&["for=6.6.6.6", "for=198.51.100.17"]),
            "198.51.100.17"
        );
        // An obfuscated or unknown node ends the walk at the last address a trusted proxy named.
        assert_eq!(resolve(&["for=198.51.100.17, for=_hidden"]), "10.0.0.1");
        assert_eq!(resolve(&["for=unknown, for=10.0.0.9"]), "10.0.0.9");
        assert_eq!(resolve(&["proto=https"]), "10.0.0.1");
    }

    #[test]
    fn blocks_are_checked() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "example.com",
        ] {
            assert!(TrustedProxies::new([bad]).is_err(), "{bad}");
        }
        let all = TrustedProxies::new(["0.0.0.0/0", "::/0"]).unwrap();
        assert!(
            all.contains("8.8.8.8".parse().unwrap()) && all.contains("2001::1".parse().unwrap())
        );
        let v6 = TrustedProxies::new(["2001:db8::/32"]).unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    }

    proptest! {
        /// Whatever the client writes into the header, it cannot name an address to the left of the
        /// first untrusted hop: the result is the peer or one of the entries a trusted proxy appended.
        #[test]
        fn clients_cannot_pick_their_own_address(spoofed in "[ -~]{0,64}", real in any::<[u8; 4]>()) {
            let layer = SetClientIpLayer::new().trust(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
            let real = IpAddr::from(real);
            let header = format!("{spoofed}, {real}");
            let mut headers = HeaderMap::new();
            if let Ok(value) = header.parse() {
                headers.insert("x-forwarded-for", value);
                let client = layer.resolve("10.0.0.1".parse().unwrap(), &headers);
                let real_trusted = TrustedProxies::new(["10.0.0.0/8"]).unwrap().contains(real);
                if !real_trusted {
                    prop_assert_eq!(client, real);
                }
            }
        }
    }
}
