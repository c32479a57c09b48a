//! A small demo origin: a few HTML pages and JSON endpoints, one of them deliberately slow.
//!
//! It stands in for the application server behind the edge, so the examples need nothing else running. It is
//! served by bare hyper on a loopback port and reached by the pipeline through real HTTP.
//!
//! | path | answer |
//! |---|---|
//! | `/` | the home page, its hero chosen by the edge (`x-edge-variant`: `classic` or `bold`) |
//! | `/about` | an HTML page, `Cache-Control: public, max-age=60` |
//! | `/api/products` | JSON list, `max-age=30` |
//! | `/api/products/{id}` | one product as JSON, or a JSON `404` |
//! | `/api/slow?ms=N` | JSON after `N` ms (default 2000, at most 10000): the slow backend the edge must not wait on forever; cacheable for `fresh=S` seconds (default 5), then stale-while-revalidate for 60 s |
//! | `/api/stall?ms=N&cache=C` | a head and half a body at once, the rest after `N` ms (default 5000, at most 10000): the stalled origin body; cacheable for 60 s unless `cache=0` |
//! | `/api/account` | JSON for the user the edge verified (`x-edge-user`); `401` without one |
//! | `/api/trace` | the `traceparent` the origin received (the edge's client span), uncacheable |
//! | `/esi/page` | an ESI template: a cached header fragment, a slow recommendations fragment, a broken one with an `alt`, a greeting from `$(QUERY_STRING{name})` |
//! | `/fragments/{header,recommendations,broken,fallback}` | its fragments (`recommendations` takes 800 ms, `broken` answers 500) |
//! | `/api/recommendations?ms=N` | JSON after `N` ms (default 700): the slow personalised data of the edge-rendered `/shell` page |
//! | `/api/echo` | JSON describing the request as the origin saw it (method, path, forwarded headers, body size) |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use edge_core::Body;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The ESI template at `/esi/page`: assembled by the edge from the fragments below.
pub const ESI_PAGE: &str = "<!DOCTYPE html><html><head><title>ESI demo</title></head><body>\
<esi:include src=\"/fragments/header\"/>\
<h1><esi:vars>Hello, $(QUERY_STRING{name}|'guest')</esi:vars></h1>\
<esi:include src=\"/fragments/recommendations\"/>\
<esi:include src=\"/fragments/broken\" alt=\"/fragments/fallback\"/>\
<esi:remove><p>Your cache does not speak ESI.</p></esi:remove>\
<footer>assembled at the edge</footer></body></html>";

/// The longest `/api/slow` waits, whatever it is asked.
pub const MAX_SLOW: Duration = Duration::from_secs(10);

const PRODUCTS: [(u32, &str, u32); 3] = [
    (1, "Espresso cup", 1200),
    (2, "Pour-over kettle", 4900),
    (3, "Hand grinder", 8900),
];

/// A running demo origin; stops accepting connections when dropped.
#[derive(Debug)]
pub struct DemoOrigin {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl DemoOrigin {
    /// Starts the origin on an ephemeral port on 127.0.0.1.
    ///
    /// # Errors
    ///
    /// The port could not be bound.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        Ok(Self::serve(listener))
    }

    /// Serves the origin on `listener`.
    #[must_use]
    pub fn serve(listener: TcpListener) -> Self {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors or similar: wait instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                tokio::spawn(async move {
                    let service =
                        service_fn(
                            |request| async move { Ok::<_, Infallible>(respond(request).await) },
                        );
                    // A client that goes away mid-request is not the origin's problem.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, accept }
    }

    /// Where the origin listens.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The origin's base URL, `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for DemoOrigin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn respond(request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    match (request.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/") => {
            // The edge decides the A/B variant; the origin only renders it.
            let hero = match request
                .headers()
                .get("x-edge-variant")
                .and_then(|v| v.to_str().ok())
            {
                Some("bold") => HERO_BOLD,
                _ => HERO_CLASSIC,
            };
            let mut response = html(
                StatusCode::OK,
                60,
                &page("Home", &format!("{hero}\n{HOME}")),
            );
            // The page differs by the edge's variant: caches must keep one copy per variant.
            response
                .headers_mut()
                .insert(header::VARY, HeaderValue::from_static("x-edge-variant"));
            response
        }
        (&Method::GET | &Method::HEAD, "/about") => html(StatusCode::OK, 60, &page("About", ABOUT)),
        (&Method::GET | &Method::HEAD, "/api/products") => {
            let products: Vec<_> = PRODUCTS
                .iter()
                .map(|(id, name, cents)| json!({ "id": id, "name": name, "price_cents": cents }))
                .collect();
            let mut response = json_response(StatusCode::OK, 30, &json!({ "products": products }));
            // Purgeable as a group at the edge (`tag products`).
            response
                .headers_mut()
                .insert("cache-tag", HeaderValue::from_static("products"));
            response
        }
        (&Method::GET | &Method::HEAD, p) if p.starts_with("/api/products/") => {
            let id = p.trim_start_matches("/api/products/").parse::<u32>().ok();
            match PRODUCTS.iter().find(|(pid, _, _)| Some(*pid) == id) {
                Some((id, name, cents)) => json_response(
                    StatusCode::OK,
                    30,
                    &json!({ "id": id, "name": name, "price_cents": cents }),
                ),
                None => json_response(
                    StatusCode::NOT_FOUND,
                    0,
                    &json!({ "error": "no such product" }),
                ),
            }
        }
        (&Method::GET, "/api/slow") => {
            let ms = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("ms="))
                .and_then(|ms| ms.parse::<u64>().ok())
                .unwrap_or(2000);
            let delay = Duration::from_millis(ms).min(MAX_SLOW);
            let fresh = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("fresh="))
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(5)
                .min(3600);
            tokio::time::sleep(delay).await;
            let mut response =
                json_response(StatusCode::OK, 0, &json!({ "slept_ms": delay.as_millis() }));
            // Cacheable at the edge for a few seconds, then served stale while one request refreshes
            // it: the demo of coalescing and stale-while-revalidate.
            if let Ok(value) = HeaderValue::from_str(&format!(
                "public, max-age={fresh}, stale-while-revalidate=60"
            )) {
                response.headers_mut().insert(header::CACHE_CONTROL, value);
            }
            response
        }
        (&Method::GET, "/api/stall") => {
            let ms = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("ms="))
                .and_then(|ms| ms.parse::<u64>().ok())
                .unwrap_or(5000);
            let delay = Duration::from_millis(ms).min(MAX_SLOW);
            let cacheable = !query.split('&').any(|pair| pair == "cache=0");
            let first = futures_util::stream::once(async { Ok(Bytes::from_static(b"{\"half\":")) });
            let rest = futures_util::stream::once(async move {
                tokio::time::sleep(delay).await;
                Ok::<_, std::io::Error>(Bytes::from_static(b"true}"))
            });
            let mut response = with_headers(
                StatusCode::OK,
                if cacheable { 60 } else { 0 },
                "application/json",
                Bytes::new(),
            );
            *response.body_mut() = Body::from_stream(futures_util::StreamExt::chain(first, rest));
            response
        }
        (&Method::GET, "/api/account") => {
            // Trusts the edge: `x-edge-user` is set only from a verified token.
            let user = request
                .headers()
                .get("x-edge-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match user {
                Some(user) => json_response(
                    StatusCode::OK,
                    0,
                    &json!({ "user": user, "plan": "espresso-club" }),
                ),
                None => json_response(
                    StatusCode::UNAUTHORIZED,
                    0,
                    &json!({ "error": "no verified user" }),
                ),
            }
        }
        (&Method::GET, "/esi/page") => with_headers(
            StatusCode::OK,
            60,
            "text/html; charset=utf-8",
            Bytes::from_static(ESI_PAGE.as_bytes()),
        ),
        (&Method::GET, "/fragments/header") => with_headers(
            StatusCode::OK,
            300,
            "text/html; charset=utf-8",
            Bytes::from_static(b"<header><a href=\"/\">Demo shop</a></header>"),
        ),
        (&Method::GET, "/fragments/recommendations") => {
            tokio::time::sleep(Duration::from_millis(800)).await;
            with_headers(
                StatusCode::OK,
                0,
                "text/html; charset=utf-8",
                Bytes::from_static(
                    b"<section class=\"recommended\">Recommended: Hand grinder</section>",
                ),
            )
        }
        (&Method::GET, "/fragments/broken") => with_headers(
            StatusCode::INTERNAL_SERVER_ERROR,
            0,
            "text/plain",
            Bytes::from_static(b"fragment failed\n"),
        ),
        (&Method::GET, "/fragments/fallback") => with_headers(
            StatusCode::OK,
            60,
            "text/html; charset=utf-8",
            Bytes::from_static(b"<aside>Offers are unavailable right now.</aside>"),
        ),
        (&Method::GET, "/api/recommendations") => {
            let ms = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("ms="))
                .and_then(|ms| ms.parse::<u64>().ok())
                .unwrap_or(700);
            tokio::time::sleep(Duration::from_millis(ms).min(MAX_SLOW)).await;
            json_response(
                StatusCode::OK,
                0,
                &json!({ "items": ["Hand grinder", "Pour-over kettle <limited>"] }),
            )
        }
        (_, "/api/trace") => {
            let traceparent = request
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok());
            json_response(StatusCode::OK, 0, &json!({ "traceparent": traceparent }))
        }
        (_, "/api/echo") => {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let description = json!({
                "method": request.method().as_str(),
                "path": path,
                "query": query,
                "host": header("host"),
                "via": header("via"),
                "x_forwarded_host": header("x-forwarded-host"),
                "connection": header("connection"),
                "x_edge_user": header("x-edge-user"),
            });
            let body = collect_body(request.into_body()).await;
            let mut description = description;
            description["body_bytes"] = json!(body.len());
            json_response(StatusCode::OK, 0, &description)
        }
        _ => html(
            StatusCode::NOT_FOUND,
            0,
            &page("Not found", "<p>Nothing here.</p>"),
        ),
    }
}

async fn collect_body(body: Incoming) -> Bytes {
    Body::from_http_body(body)
        .collect(1024 * 1024)
        .await
        .unwrap_or_default()
}

const HERO_CLASSIC: &str =
    r#"<section class="hero classic"><p>Coffee gear, delivered.</p></section>"#;
const HERO_BOLD: &str =
    r#"<section class="hero bold"><p><strong>COFFEE GEAR. DELIVERED. FAST.</strong></p></section>"#;

const HOME: &str = r#"<p>This page came from the demo origin, through the edge.</p>
<ul>
  <li><a href="/about">About</a></li>
  <li><a href="/api/products">Products (JSON)</a></li>
  <li><a href="/api/slow?ms=1500">A slow endpoint</a></li>
  <li><a href="/api/echo">What the origin sees</a></li>
</ul>"#;

const ABOUT: &str = "<p>The edge gateway example: an axum server in front of this origin, built from the edge SDK.</p>";

fn page(title: &str, main: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{title} · edge demo</title></head>\n\
         <body>\n<header><h1>{title}</h1></header>\n<main>\n{main}\n</main>\n</body>\n</html>\n"
    )
}

fn html(status: StatusCode, max_age: u32, body: &str) -> Response<Body> {
    with_headers(
        status,
        max_age,
        "text/html; charset=utf-8",
        Bytes::from(body.to_owned()),
    )
}

fn json_response(status: StatusCode, max_age: u32, value: &serde_json::Value) -> Response<Body> {
    with_headers(
        status,
        max_age,
        "application/json",
        Bytes::from(value.to_string()),
    )
}

fn with_headers(
    status: StatusCode,
    max_age: u32,
    content_type: &'static str,
    body: Bytes,
) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let cache_control = if max_age == 0 {
        "no-store".to_owned()
    } else {
        format!("public, max-age={max_age}")
    };
    if let Ok(value) = HeaderValue::from_str(&cache_control) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    response
}
