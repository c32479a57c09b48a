//! Flag evaluation, ns per decision, on the three paths: a targeting rule, the weighted rollout (stable
//! hash of flag and user), and the default.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_core::RequestGeo;
use edge_kv::flags::{FlagContext, FlagSet};

const DOC: &str = r#"{"flags":{"home-hero":{"variants":["classic","bold","calm"],"default":"classic",
    "rules":[{"countries":["DE","AT","CH"],"serve":"bold"},{"attributes":{"plan":["beta"]},"serve":"calm"}],
    "rollout":[{"variant":"classic","weight":5000},{"variant":"bold","weight":3000},{"variant":"calm","weight":2000}]}}}"#;

fn evaluate(c: &mut Criterion) {
    let set = FlagSet::from_json(DOC.as_bytes()).unwrap();
    let rule = FlagContext::new()
        .with_geo(RequestGeo::new().with_country("AT"))
        .with_user("visitor-123456");
    let rollout = FlagContext::new()
        .with_geo(RequestGeo::new().with_country("US"))
        .with_user("visitor-123456");
    let default = FlagContext::new().with_geo(RequestGeo::new().with_country("US"));

    let mut group = c.benchmark_group("flags/evaluate");
    group.bench_function("rule match", |b| {
        b.iter(|| black_box(set.evaluate("home-hero", black_box(&rule))))
    });
    group.bench_function("rollout bucket", |b| {
        b.iter(|| black_box(set.evaluate("home-hero", black_box(&rollout))))
    });
    group.bench_function("default", |b| {
        b.iter(|| black_box(set.evaluate("home-hero", black_box(&default))))
    });
    group.finish();
}

criterion_group!(benches, evaluate);
criterion_main!(benches);
