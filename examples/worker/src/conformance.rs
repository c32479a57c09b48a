//! Test routes that run the SDK's conformance kits (`edge_core::testing`) inside workerd, against the real
//! bindings: the same cases `MemoryKv`, `RedisKv`, `MemoryCache`, `MemoryStorage` and `SqliteStorage` pass
//! natively. On only when the `EDGE_CONFORMANCE` variable is `on` (the test harness sets it).
//!
//! | route | what runs |
//! |---|---|
//! | `/__conformance/kv` | the KV kit on `WorkersKv` over the `EDGE_KV` binding, emptied before each case |
//! | `/__conformance/cache` | the cache kit on `WorkersCache` over `caches.default`, a fresh URL space per case |
//! | `/__conformance/durable` | the storage kit on `WorkersStorage`, inside a `StorageKitObject` |
//! | `/__conformance/alarm/{name}` | `POST` sets an `AlarmProbeObject`'s alarm, `GET` reads how often it fired |
//! | `/__conformance/bad-input` | bad input at each binding; answers the typed error kind each one got |
//! | `/__conformance/crs` | the OWASP Core Rule Set, embedded at build time, as `WafLayer::crs` in front of an echo: `403` for an attack, `200` for the rest |
//!
//! A kit case that fails panics, which traps the isolate: workerd answers 500 and logs the case's message
//! (each case is logged before it runs). That is a failed test, as `cargo test` would report it.

use bytes::Bytes;
use edge_cache::workers::WorkersCache;
use edge_core::durable::{ObjectNamespace, Storage};
use edge_core::host::workers::WorkersFetcher;
use edge_core::kv::{ListOptions, PutOptions};
use edge_core::testing::{cache as cache_kit, durable as durable_kit, kv as kv_kit};
use edge_core::{Body, CacheStore, Error, ErrorKind, Fetcher, KvStore, ManualClock};
use edge_do::workers::{WorkersNamespace, WorkersStorage};
use edge_example_pipeline::objects::json_response;
use edge_kv::workers::WorkersKv;
use http::{Method, Request, Response, StatusCode};
use worker::Env;

/// Where the test routes live.
pub(crate) const PREFIX: &str = "/__conformance/";

/// Answers a test route.
pub(crate) async fn route(request: Request<Body>, env: &Env) -> Response<Body> {
    let enabled = env
        .var("EDGE_CONFORMANCE")
        .is_ok_and(|v| v.to_string() == "on");
    if !enabled {
        return json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": "not found" }),
        );
    }
    let path = request.uri().path().trim_start_matches(PREFIX).to_owned();
    let outcome = match path.as_str() {
        "kv" => kv(env).await.map(|cases| passed("kv", &cases)),
        "cache" => cache().await.map(|cases| passed("cache", &cases)),
        "durable" => forward(env, "STORAGE_KIT", &random_name(), request).await,
        "bad-input" => bad_input(env).await,
        "crs" => Ok(crs(request).await),
        other => match other.strip_prefix("alarm/") {
            Some(name) => forward(env, "ALARM_PROBE", name, request).await,
            None => Ok(json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({ "error": "no such suite" }),
            )),
        },
    };
    outcome.unwrap_or_else(|error| {
        json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({ "error": error.kind().as_str(), "detail": error.detail() }),
        )
    })
}

include!(concat!(env!("OUT_DIR"), "/crs_embedded.rs"));

/// The embedded rule set, compiled on first use (an isolate is single-threaded; the rules are reused by
/// every request it serves).
fn crs_rules() -> Result<std::sync::Arc<edge_auth::waf::crs::RuleSet>, String> {
    thread_local! {
        static RULES: std::cell::OnceCell<Result<std::sync::Arc<edge_auth::waf::crs::RuleSet>, String>> =
            const { std::cell::OnceCell::new() };
    }
    RULES.with(|cell| {
        cell.get_or_init(|| {
            if CRS_RULES.is_empty() {
                return Err("no CRS was embedded (EDGE_CRS_DIR at build time)".to_owned());
            }
            let mut builder = edge_auth::waf::crs::RuleSet::builder();
            for (name, text) in CRS_RULES {
                builder = builder.rules(*name, *text);
            }
            for (name, text) in CRS_DATA {
                builder = builder.data_file(*name, *text);
            }
            builder
                .build()
                .map(std::sync::Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
    })
}

/// The request through `WafLayer::crs` in front of an echo of its method and path.
async fn crs(request: Request<Body>) -> Response<Body> {
    use tower::{Layer, ServiceExt};
    let rules = match crs_rules() {
        Ok(rules) => rules,
        Err(why) => {
            return json_response(
                StatusCode::NOT_IMPLEMENTED,
                &serde_json::json!({ "error": why }),
            );
        }
    };
    let echo = tower::service_fn(|request: Request<Body>| async move {
        let line = format!("passed {} {}", request.method(), request.uri());
        Ok::<_, std::convert::Infallible>(Response::new(Body::from(line)))
    });
    match edge_auth::waf::WafLayer::crs(rules)
        .layer(echo)
        .oneshot(request)
        .await
    {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The answer of a suite that passed.
pub(crate) fn passed(suite: &str, cases: &[&str]) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "suite": suite, "passed": cases.len(), "cases": cases }),
    )
}

fn random_name() -> String {
    format!("kit-{}", js_sys::Math::random().to_bits())
}

fn log(suite: &str, case: &str) {
    worker::console_log!("conformance {suite}: {case}");
}

async fn forward(
    env: &Env,
    binding: &str,
    name: &str,
    request: Request<Body>,
) -> Result<Response<Body>, Error> {
    let namespace = WorkersNamespace::from_env(env, binding)?;
    let (parts, body) = request.into_parts();
    let mut forwarded = Request::new(body);
    *forwarded.method_mut() = parts.method;
    *forwarded.uri_mut() = format!("https://probe.invalid/{name}")
        .parse()
        .map_err(|_| Error::new(ErrorKind::InvalidInput, "object name"))?;
    namespace
        .fetch(&namespace.id_from_name(name), forwarded)
        .await
}

/// Deletes every key, so the next case starts from an empty namespace.
async fn empty<S: KvStore>(store: &S) -> Result<(), Error> {
    loop {
        let page = store.list(ListOptions::new()).await?;
        if page.keys.is_empty() {
            return Ok(());
        }
        for key in page.keys {
            store.delete(&key.name).await?;
        }
    }
}

async fn kv(env: &Env) -> Result<Vec<&'static str>, Error> {
    macro_rules! cases {
        ($($case:ident),*) => {{
            let mut ran = Vec::new();
            $(
                log("kv", stringify!($case));
                let clock = ManualClock::new();
                let store = WorkersKv::from_env(env, "EDGE_KV")?.with_clock(clock.clone());
                empty(&store).await?;
                kv_kit::$case(&store, &clock).await;
                ran.push(stringify!($case));
            )*
            ran
        }};
    }
    let ran = cases!(
        crud,
        metadata_round_trip,
        ttl_expiry,
        absolute_expiry,
        list_order_prefix_and_pages,
        list_cursor_survives_changes,
        bad_input_is_refused_without_side_effects,
        concurrent_writers
    );
    empty(&WorkersKv::from_env(env, "EDGE_KV")?).await?;
    Ok(ran)
}

async fn cache() -> Result<Vec<&'static str>, Error> {
    let run = random_name();
    macro_rules! cases {
        ($($case:ident),*) => {{
            let mut ran = Vec::new();
            $(
                log("cache", stringify!($case));
                let clock = ManualClock::new();
                let store = WorkersCache::default_cache()?
                    .with_base_url(format!("https://{run}-{}.invalid/", stringify!($case)))
                    .with_clock(clock.clone());
                cache_kit::$case(&store, &clock).await;
                ran.push(stringify!($case));
            )*
            ran
        }};
    }
    Ok(cases!(
        crud,
        expiry,
        purge_by_tag,
        bad_input_is_refused_without_side_effects,
        concurrent_writers
    ))
}

/// The storage kit, case by case on one object's storage, emptied before each.
pub(crate) async fn durable_storage(storage: &WorkersStorage) -> Result<Vec<&'static str>, Error> {
    macro_rules! cases {
        ($($case:ident),*) => {{
            let mut ran = Vec::new();
            $(
                log("durable-object storage", stringify!($case));
                storage.delete_all().await?;
                durable_kit::$case(storage).await;
                ran.push(stringify!($case));
            )*
            ran
        }};
    }
    let ran = cases!(
        crud,
        get_many_in_key_order,
        list_prefix_range_limit_reverse,
        batches_are_all_or_nothing,
        limits_are_refused_without_side_effects,
        the_empty_key_is_a_key,
        delete_all_clears_entries_and_alarm,
        alarm_round_trip
    );
    storage.delete_all().await?;
    Ok(ran)
}

/// Bad input at each binding, and the error kind each one gets: never a trap.
async fn bad_input(env: &Env) -> Result<Response<Body>, Error> {
    let kind = |result: Result<(), Error>| match result {
        Ok(()) => "accepted".to_owned(),
        Err(e) => e.kind().as_str().to_owned(),
    };
    let kv = WorkersKv::from_env(env, "EDGE_KV")?;
    let over_limit = Bytes::from(vec![b'x'; kv.limits().max_value_len + 1]);
    let cache = WorkersCache::default_cache()?.with_base_url("https://bad-input.invalid/");
    let mut huge = edge_core::cache::CachedResponse::new(
        StatusCode::OK,
        http::HeaderMap::new(),
        Bytes::from(vec![0; cache.limits().max_entry_weight + 1]),
        std::time::SystemTime::UNIX_EPOCH,
    );
    huge.tags = vec![];
    let report = serde_json::json!({
        "missing_kv_binding": kind(WorkersKv::from_env(env, "NO_SUCH_KV").map(|_| ())),
        "missing_object_binding": kind(WorkersNamespace::from_env(env, "NO_SUCH_OBJECTS").map(|_| ())),
        "kv_value_over_limit": kind(kv.put("big", over_limit, PutOptions::new()).await),
        "kv_key_over_limit": kind(kv.get(&"k".repeat(513)).await.map(|_| ())),
        // A cursor in our wrapping whose inner cursor the platform never handed out: KV throws.
        "kv_forged_cursor": kind(
            kv.list(ListOptions::new().with_cursor("wkv1.6e6f742d612d637572736f72"))
                .await
                .map(|_| ())
        ),
        "kv_foreign_cursor": kind(kv.list(ListOptions::new().with_cursor("garbage")).await.map(|_| ())),
        "cache_entry_over_limit": kind(cache.put("/big", huge).await),
        // The Cache API refuses keys that are not fully qualified URLs: a JS exception inside `cache.put`.
        "cache_put_refused": kind(
            WorkersCache::default_cache()?
                .with_base_url("blob:refused")
                .put("/x", edge_core::cache::CachedResponse::new(
                    StatusCode::OK,
                    http::HeaderMap::new(),
                    Bytes::from_static(b"x"),
                    std::time::SystemTime::UNIX_EPOCH,
                ))
                .await
        ),
        // `fetch` to a URL the runtime refuses throws inside the binding call.
        "fetch_refused": kind(
            WorkersFetcher::new()
                .fetch(
                    Request::builder()
                        .method(Method::GET)
                        .uri("ftp://example.invalid/")
                        .body(Body::empty())
                        .map_err(|_| Error::new(ErrorKind::InvalidInput, "request"))?,
                )
                .await
                .map(|_| ())
        ),
    });
    Ok(json_response(StatusCode::OK, &report))
}
