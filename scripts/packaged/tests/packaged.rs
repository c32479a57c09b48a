//! One use of each packaged crate, through its public API only: if a file the build needs was left out of
//! a `.crate`, or a dependency is declared only in the workspace, this does not build.

use std::time::Duration;

use bytes::Bytes;
use edge_core::durable::Storage;
use edge_core::{KvStore, kv::PutOptions};

#[tokio::test]
async fn every_packaged_crate_works_from_its_crate_file() {
    // edge-kv on edge-core's contract.
    let kv = edge_kv::MemoryKv::new();
    kv.put("flag", Bytes::from_static(b"on"), PutOptions::new()).await.unwrap();
    assert_eq!(kv.get("flag").await.unwrap(), Some(Bytes::from_static(b"on")));

    // edge-auth: RFC 7515 A.1 (HS256) and A.4 (ES512, feature es512).
    use edge_auth::jwt::{Algorithm, Jwk, KeySet, Validation, Verifier, VerifyingKey};
    let secret = [
        3, 35, 53, 75, 43, 15, 165, 188, 131, 126, 6, 101, 119, 123, 166, 143, 90, 179, 40, 230, 240, 84, 201,
        40, 169, 15, 132, 178, 210, 80, 46, 191, 211, 251, 90, 146, 210, 6, 71, 239, 150, 138, 180, 195, 119,
        98, 61, 34, 61, 46, 33, 114, 5, 46, 79, 8, 192, 205, 154, 245, 103, 208, 128, 163,
    ];
    let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let keys = KeySet::new().with(VerifyingKey::hmac(Algorithm::HS256, &secret).unwrap());
    let verified = Verifier::new(Validation::new().with_issuer("joe"))
        .verify::<serde_json::Value>(token, &keys, Duration::from_secs(1_300_819_300))
        .unwrap();
    assert_eq!(verified.custom["http://example.com/is_root"], true);
    let jwk = br#"{"kty":"EC","crv":"P-521","x":"AekpBQ8ST8a8VcfVOTNl353vSrDCLLJXmPk06wTjxrrjcBpXp5EOnYG_NjFZ6OvLFV1jSfS9tsz4qUxcWceqwQGk","y":"ADSmRA43Z1DSNx_RvcLI87cdL07l6jQyyBXMoxVg_l2Th-x3S1WDhjDly79ajL4Kkd0AZMaZmh9ubmf63e3kyMj2"}"#;
    let key = Jwk::from_json(jwk).unwrap().to_verifying_key().unwrap();
    let jws = "eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZA.AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPWROc-mZZqwqT2SI-KGDKB34XO0aw_7XdtAG8GaSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8KpEHwJjyqOgzDO7iKvU8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn";
    let (_, payload) = Verifier::default().verify_jws(jws, &key).unwrap();
    assert_eq!(payload, b"Payload");

    // edge-cache: Cache-Control as a shared cache reads it.
    let value = http::HeaderValue::from_static("max-age=60, s-maxage=300");
    let directives = edge_cache::Directives::parse([&value]);
    assert_eq!((directives.max_age, directives.s_maxage), (Some(60), Some(300)));

    // edge-render: text in HTML.
    let mut html = String::new();
    edge_render::html::escape::text("<b>&</b>", &mut html);
    assert_eq!(html, "&lt;b&gt;&amp;&lt;/b&gt;");

    // edge-do: an object's storage in SQLite (feature sqlite, bundled), read back after reopening.
    let path = std::env::temp_dir().join(format!("edge-packaged-{}.db", std::process::id()));
    let id = edge_core::durable::ObjectId::from_name("room-1");
    let store = edge_do::SqliteStore::open(&path).unwrap();
    store.storage(&id).put("count", Bytes::from_static(b"1")).await.unwrap();
    drop(store);
    let reopened = edge_do::SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.storage(&id).get("count").await.unwrap(), Some(Bytes::from_static(b"1")));
    drop(reopened);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }

    // edge-observe: a counter in Prometheus text.
    let registry = edge_observe::Registry::new();
    registry.counter("edge_requests_total", "Requests.", &["route"]).with(&["/"]).add(2);
    assert!(registry.render_prometheus().contains("edge_requests_total{route=\"/\"} 2"));
}

/// The adoption path from the packaged files: the layers in an axum router, over axum's bodies.
#[tokio::test]
async fn the_layers_go_into_an_axum_router() {
    use axum::routing::get;
    use tower::ServiceExt;

    let host = edge_core::host::tokio::TokioHost::new().unwrap();
    let clock = host.clock();
    let cache = edge_cache::layer::CacheLayer::new(clock, host.background())
        .memory(edge_cache::MemoryCache::new(1 << 20, clock));
    let app = axum::Router::new()
        .route("/", get(|| async { ([("cache-control", "public, max-age=60")], "hello") }))
        .route_layer(cache)
        .layer(edge_auth::waf::WafLayer::new(edge_auth::waf::WafRules::new()))
        .layer(edge_core::host::SetClientIpLayer::new())
        .layer(edge_observe::trace::TraceLayer::new(clock, host.background(), edge_core::trace::SplitMix::from_os()));
    let get = || http::Request::get("http://shop.example/").body(axum::body::Body::empty()).unwrap();
    app.clone().oneshot(get()).await.unwrap();
    let hit = app.oneshot(get()).await.unwrap();
    assert_eq!(hit.headers()["x-cache-status"], "HIT");
    assert_eq!(hit.headers()["content-length"], "5");
}
