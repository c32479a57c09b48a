//! What the request-path benches share: one request through a tower service per iteration.

use std::hint::black_box;

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use tower::{Service, ServiceExt};

/// Benches `name`: each iteration sends one `request()` through `service` on `runtime` and waits for the
/// response. Errors panic: a bench of a failing service measures nothing.
pub(crate) fn bench_service<S, R>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    runtime: &tokio::runtime::Runtime,
    service: &mut S,
    request: impl Fn() -> R,
) where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter(|| {
            runtime.block_on(async {
                let response = service
                    .ready()
                    .await
                    .unwrap()
                    .call(request())
                    .await
                    .unwrap();
                black_box(response)
            })
        })
    });
}
