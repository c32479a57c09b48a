//! The contracts from the outside: the conformance kits checked against reference stores, `Send` futures
//! from generic code on tokio, `HyperFetcher` over real loopback HTTP, and `TokioWaitUntil`'s drain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edge_core::cache::{CacheLimits, CachedResponse};
use edge_core::host::tokio::HyperFetcher;
use edge_core::host::tokio::TokioWaitUntil;
use edge_core::kv::{KvEntry, KvLimits, ListKey, ListOptions, ListPage, PutOptions};
use edge_core::{
    Body, CacheStore, Clock, Error, ErrorKind, Fetcher, KvStore, ManualClock, WaitUntil,
};

/// The simplest correct `CacheStore`: a map behind a mutex. It exists to check the cache kit itself.
struct ReferenceCache {
    clock: ManualClock,
    entries: Mutex<BTreeMap<String, CachedResponse>>,
}

impl CacheStore for ReferenceCache {
    fn limits(&self) -> CacheLimits {
        CacheLimits::new(64 * 1024)
    }

    async fn get(&self, key: &str) -> Result<Option<CachedResponse>, Error> {
        self.limits().check_key(key)?;
        let now = self.clock.wall_time();
        Ok(self
            .entries
            .lock()
            .unwrap()
            .get(key)
            .filter(|e| !e.is_expired_at(now))
            .cloned())
    }

    async fn put(&self, key: &str, response: CachedResponse) -> Result<(), Error> {
        self.limits().check_put(key, &response)?;
        self.entries
            .lock()
            .unwrap()
            .insert(key.to_owned(), response);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.limits().check_key(key)?;
        let now = self.clock.wall_time();
        Ok(self
            .entries
            .lock()
            .unwrap()
            .remove(key)
            .is_some_and(|e| !e.is_expired_at(now)))
    }

    async fn purge_tag(&self, tag: &str) -> Result<usize, Error> {
        self.limits().check_tag(tag)?;
        let now = self.clock.wall_time();
        let mut entries = self.entries.lock().unwrap();
        let before = entries.values().filter(|e| !e.is_expired_at(now)).count();
        entries.retain(|_, e| !e.tags.iter().any(|t| t == tag));
        let after = entries.values().filter(|e| !e.is_expired_at(now)).count();
        Ok(before - after)
    }
}

#[tokio::test]
async fn the_cache_kit_passes_on_a_reference_store() {
    edge_core::testing::cache::run_all(|clock| ReferenceCache {
        clock,
        entries: Mutex::default(),
    })
    .await;
}

/// A `KvStore` that reads no clock (so expiry is wrong): the KV kit must catch it.
struct ForgetfulKv {
    entries: Mutex<BTreeMap<String, KvEntry>>,
}

impl KvStore for ForgetfulKv {
    fn limits(&self) -> KvLimits {
        KvLimits::WORKERS
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        self.limits().check_key(key)?;
        Ok(self
            .entries
            .lock()
            .unwrap()
            .get(key)
            .map(|e| e.value.clone()))
    }
    async fn get_with_metadata(&self, key: &str) -> Result<Option<KvEntry>, Error> {
        self.limits().check_key(key)?;
        Ok(self.entries.lock().unwrap().get(key).cloned())
    }
    async fn put(&self, key: &str, value: Bytes, options: PutOptions) -> Result<(), Error> {
        let expires_at = self
            .limits()
            .check_put(key, &value, &options, || SystemTime::UNIX_EPOCH)?;
        let entry = KvEntry::new(value)
            .with_metadata(options.metadata)
            .with_expires_at(expires_at);
        self.entries.lock().unwrap().insert(key.to_owned(), entry);
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.limits().check_key(key)?;
        self.entries.lock().unwrap().remove(key);
        Ok(())
    }
    async fn list(&self, _options: ListOptions) -> Result<ListPage, Error> {
        let entries = self.entries.lock().unwrap();
        let keys = entries
            .iter()
            .map(|(k, e)| {
                ListKey::new(k)
                    .with_metadata(e.metadata.clone())
                    .with_expires_at(e.expires_at)
            })
            .collect();
        Ok(ListPage::new(keys, None))
    }
}

#[tokio::test]
async fn the_kv_kit_catches_a_store_that_ignores_the_clock() {
    let caught = tokio::spawn(edge_core::testing::kv::run_all(|_clock| ForgetfulKv {
        entries: Mutex::default(),
    }))
    .await
    .expect_err("the kit must fail a store whose expiry ignores the clock");
    assert!(caught.is_panic());
}

/// Generic code over the contracts is `Send` on tokio without naming any concrete type: this compiles only
/// because the traits' futures are `MaybeSend`, which is `Send` off wasm32.
fn spawn_generic_reads<S: KvStore + ?Sized + 'static, F: Fetcher + ?Sized + 'static>(
    kv: Arc<S>,
    fetcher: Arc<F>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = kv.get("k").await;
        let request = http::Request::get("http://127.0.0.1:9/")
            .body(Body::empty())
            .unwrap();
        let _ = fetcher.fetch(request).await;
    })
}

#[tokio::test]
async fn generic_code_over_the_contracts_spawns_on_tokio() {
    let kv = Arc::new(ForgetfulKv {
        entries: Mutex::default(),
    });
    let fetcher = Arc::new(edge_core::testing::TestFetcher::new());
    spawn_generic_reads(kv, fetcher).await.unwrap();
    let boxed: Arc<dyn edge_core::kv::DynKvStore> = Arc::new(ForgetfulKv {
        entries: Mutex::default(),
    });
    let boxed_fetcher: Arc<dyn edge_core::fetch::DynFetcher> =
        Arc::new(edge_core::testing::TestFetcher::new());
    spawn_generic_reads(boxed, boxed_fetcher).await.unwrap();
}

/// A loopback HTTP server answering `/slow` after a second and everything else at once.
async fn loopback_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        if request.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        let size = Body::from_http_body(request.into_body())
                            .collect(1 << 20)
                            .await
                            .unwrap()
                            .len();
                        Ok::<_, Infallible>(http::Response::new(Body::from(format!(
                            "got {size} bytes"
                        ))))
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn hyper_fetcher_speaks_http_and_types_its_failures() {
    let addr = loopback_server().await;
    let fetcher = HyperFetcher::new().with_timeout(Duration::from_millis(200));

    let request = http::Request::post(format!("http://{addr}/upload"))
        .body(Body::from(vec![1u8; 5000]))
        .unwrap();
    let response = fetcher.fetch(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.into_body().collect(1024).await.unwrap(),
        "got 5000 bytes"
    );

    let request = http::Request::get(format!("http://{addr}/slow"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        fetcher.fetch(request).await.unwrap_err().kind(),
        ErrorKind::Timeout
    );

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let request = http::Request::get(format!("http://{closed}/"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        fetcher.fetch(request).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );

    let request = http::Request::get("/relative").body(Body::empty()).unwrap();
    assert_eq!(
        fetcher.fetch(request).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_wait_until_runs_work_after_and_drains_it() {
    let background = TokioWaitUntil::current().unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..20u64 {
        let done = Arc::clone(&done);
        background.wait_until(async move {
            tokio::time::sleep(Duration::from_millis(5 * (i % 4))).await;
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    // A task that panics still counts as finished.
    background.wait_until(async { panic!("exporter bug") });
    background.drain().await;
    assert_eq!(done.load(Ordering::SeqCst), 20);
    assert_eq!(background.in_flight(), 0);
}

#[test]
fn tokio_wait_until_needs_a_runtime() {
    assert_eq!(
        TokioWaitUntil::current().unwrap_err().kind(),
        ErrorKind::Unavailable
    );
}
