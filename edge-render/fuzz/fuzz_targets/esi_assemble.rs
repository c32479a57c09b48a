//! Any template (and fragments that are themselves ESI, including each other): assembly never panics,
//! ends, and produces bounded output.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use edge_cache::memory::MemoryCache;
use edge_core::testing::{Reply, TestFetcher};
use edge_core::{BoxStream, Error, ManualClock};
use edge_render::esi::{Assembler, EsiSettings, Variables};
use futures::Stream;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let clock = ManualClock::new();
    let origin = TestFetcher::new().with_clock(clock.clone());
    // Fragments that include each other and themselves, with latency, failures and alternates.
    origin.route("/a", Reply::ok("A<esi:include src=\"/b\"/>"));
    origin.route(
        "/b",
        Reply::ok("B<esi:include src=\"/a\" alt=\"/c\" onerror=\"continue\"/>"),
    );
    origin.route("/c", Reply::ok("C").with_latency(Duration::from_millis(30)));
    origin.route(
        "/fan",
        Reply::ok(
            "<esi:include src=\"/fan\"/><esi:include src=\"/a\"/><esi:include src=\"/fan\"/>",
        ),
    );
    origin.route("/slow", Reply::ok("S").with_latency(Duration::from_secs(5)));
    let settings = EsiSettings::default().with_max_fragment_size(4096);
    let esi: Assembler<TestFetcher, MemoryCache<ManualClock>> = Assembler::new(
        origin,
        Some(MemoryCache::new(1 << 16, clock.clone())),
        clock.clone(),
        clock.clone(),
        settings.clone(),
    );
    let mid = data.len() / 2;
    let chunks = vec![
        Ok(Bytes::copy_from_slice(&data[..mid])),
        Ok(Bytes::copy_from_slice(&data[mid..])),
    ];
    let template: BoxStream<'static, Result<Bytes, Error>> =
        Box::pin(futures::stream::iter(chunks));
    let mut stream = esi.assemble(
        http::Uri::from_static("http://shop.example/page"),
        Variables::default(),
        None,
        template,
    );
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    let mut produced = 0usize;
    let bound = data.len() + settings.max_fragments * settings.max_fragment_size;
    for _ in 0..100_000 {
        match Pin::new(&mut stream).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                produced += chunk.len();
                assert!(
                    produced <= bound,
                    "{produced} bytes out of {} in",
                    data.len()
                );
            }
            Poll::Ready(Some(Err(_)) | None) => return,
            Poll::Pending => clock.advance(Duration::from_millis(50)),
        }
    }
    panic!("the assembly did not end");
});
