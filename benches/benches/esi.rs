//! ESI assembly of a ~200 KB page with 10 in-memory fragments: edge-render's assembler (tokenize, parse,
//! fetch through a `Fetcher`, stream in order) next to a lol_html element-handler implementation of the
//! same splice, and next to the floor: a plain memchr/memmem scan-and-splice that knows nothing but
//! `<esi:include src="…"></esi:include>` (the end tag written out, since lol_html, parsing as browsers do,
//! would otherwise take everything after a `/>` on an unknown element as its content).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edge_cache::memory::MemoryCache;
use edge_core::{Body, BoxStream, Error, Fetcher, ManualClock, SystemClock};
use edge_render::esi::{Assembler, EsiSettings, Variables};
use futures::StreamExt;
use http::{Request, Response, Uri};

/// Fragments answered from memory, at once.
#[derive(Clone)]
struct InMemory(Arc<HashMap<String, Bytes>>);

impl Fetcher for InMemory {
    async fn fetch(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        let body = self
            .0
            .get(request.uri().path())
            .cloned()
            .unwrap_or_default();
        let mut response = Response::new(Body::from(body));
        let headers = response.headers_mut();
        headers.insert("content-type", http::HeaderValue::from_static("text/plain"));
        headers.insert(
            "cache-control",
            http::HeaderValue::from_static("max-age=3600"),
        );
        Ok(response)
    }
}

fn fragments() -> HashMap<String, Bytes> {
    (0..10)
        .map(|i| {
            let body = format!(
                "<section class=\"fragment-{i}\">{}</section>",
                "<li>item</li>".repeat(40)
            );
            (format!("/fragments/{i}"), Bytes::from(body))
        })
        .collect()
}

fn page() -> String {
    let filler = "<div class=\"product\"><h2>Pour-over kettle</h2><p>1.2 l, gooseneck spout &amp; thermometer.</p><a href=\"/p/42\">more</a></div>\n";
    let mut page = String::from("<!DOCTYPE html><html><head><title>Shop</title></head><body>\n");
    for i in 0..10 {
        page.push_str(&filler.repeat(150));
        // With its end tag: lol_html parses as HTML does, where `/>` does not close an unknown element.
        page.push_str(&format!(
            "<esi:include src=\"/fragments/{i}\"></esi:include>\n"
        ));
    }
    page.push_str("</body></html>\n");
    page
}

/// The floor: find each include with memmem, copy what is between, splice the fragment.
fn memchr_splice(page: &[u8], fragments: &HashMap<String, Bytes>) -> Vec<u8> {
    let mut out = Vec::with_capacity(page.len() + 64 * 1024);
    let finder = memchr::memmem::Finder::new(b"<esi:include src=\"");
    let mut rest = page;
    while let Some(at) = finder.find(rest) {
        out.extend_from_slice(&rest[..at]);
        let after = &rest[at + 18..];
        let quote = memchr::memchr(b'"', after).unwrap();
        let src = std::str::from_utf8(&after[..quote]).unwrap();
        out.extend_from_slice(&fragments[src]);
        let end = memchr::memmem::find(&after[quote..], b"</esi:include>").unwrap();
        rest = &after[quote + end + 14..];
    }
    out.extend_from_slice(rest);
    out
}

/// lol_html: an element handler on `esi:include` replacing each with its fragment.
fn lol_html_splice(page: &[u8], fragments: &HashMap<String, Bytes>) -> Vec<u8> {
    use lol_html::html_content::ContentType;
    use lol_html::{HtmlRewriter, Settings, element};
    let mut out = Vec::with_capacity(page.len() + 64 * 1024);
    let mut rewriter = HtmlRewriter::new(
        Settings {
            element_content_handlers: vec![element!("esi\\:include", |el| {
                let src = el.get_attribute("src").unwrap_or_default();
                let fragment = std::str::from_utf8(&fragments[&src]).unwrap_or_default();
                el.replace(fragment, ContentType::Html);
                Ok(())
            })],
            ..Settings::new()
        },
        |chunk: &[u8]| out.extend_from_slice(chunk),
    );
    for chunk in page.chunks(16 * 1024) {
        rewriter.write(chunk).unwrap();
    }
    rewriter.end().unwrap();
    out
}

fn template(page: &Bytes) -> BoxStream<'static, Result<Bytes, Error>> {
    let chunks: Vec<Result<Bytes, Error>> = (0..page.len())
        .step_by(16 * 1024)
        .map(|start| Ok(page.slice(start..(start + 16 * 1024).min(page.len()))))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

fn assemble(c: &mut Criterion) {
    let fragments = fragments();
    let page = page();
    let page_bytes = Bytes::from(page.clone());
    // The hot path: fragments in the edge's memory cache (warmed by the first page). And the cold one:
    // every fragment through the `Fetcher` (and the coalescer), no cache.
    let fragment_cache = MemoryCache::new(16 << 20, SystemClock::new());
    let cached: Assembler<InMemory, MemoryCache<SystemClock>> = Assembler::new(
        InMemory(Arc::new(fragments.clone())),
        Some(fragment_cache),
        SystemClock::new(),
        ManualClock::new(),
        EsiSettings::default(),
    );
    let uncached: Assembler<InMemory, MemoryCache<SystemClock>> = Assembler::new(
        InMemory(Arc::new(fragments.clone())),
        None,
        SystemClock::new(),
        ManualClock::new(),
        EsiSettings::default(),
    );
    let url = Uri::from_static("http://shop.example/");
    let run = |esi: &Assembler<InMemory, MemoryCache<SystemClock>>, page: &Bytes| {
        futures::executor::block_on(async {
            let mut stream = esi.assemble(url.clone(), Variables::default(), None, template(page));
            let mut out = Vec::with_capacity(page.len() + 64 * 1024);
            while let Some(chunk) = stream.next().await {
                out.extend_from_slice(&chunk.unwrap());
            }
            out
        })
    };
    // All build the same page (lol_html re-serializes nothing it did not touch).
    let floor = memchr_splice(page.as_bytes(), &fragments);
    assert!(
        run(&uncached, &page_bytes) == floor,
        "the assembler's page differs from the floor's"
    );
    assert!(
        run(&cached, &page_bytes) == floor,
        "the cached assembly differs from the floor's"
    );
    let mut group = c.benchmark_group("esi/assemble 200 KB, 10 fragments");
    group.throughput(Throughput::Bytes(page.len() as u64));
    group.bench_function(
        "edge_render::esi::Assembler, fragments in the memory cache",
        |b| b.iter(|| black_box(run(&cached, black_box(&page_bytes)).len())),
    );
    group.bench_function(
        "edge_render::esi::Assembler, fragments through the Fetcher",
        |b| b.iter(|| black_box(run(&uncached, black_box(&page_bytes)).len())),
    );
    group.bench_function("lol_html element handlers", |b| {
        b.iter(|| black_box(lol_html_splice(black_box(page.as_bytes()), &fragments).len()))
    });
    group.bench_function("edge_render::esi::Tokenizer alone", |b| {
        b.iter(|| {
            let mut tokenizer = edge_render::esi::Tokenizer::default();
            let mut tokens = Vec::new();
            for start in (0..page_bytes.len()).step_by(16 * 1024) {
                let chunk = page_bytes.slice(start..(start + 16 * 1024).min(page_bytes.len()));
                tokenizer.feed(chunk, &mut tokens).unwrap();
            }
            tokenizer.finish(&mut tokens).unwrap();
            black_box(tokens.len())
        })
    });
    group.bench_function("memchr scan-and-splice (floor)", |b| {
        b.iter(|| black_box(memchr_splice(black_box(page.as_bytes()), &fragments).len()))
    });
    group.finish();

    // The same two measured interleaved, in one loop: drift on a shared machine lands on both alike, so
    // the ratio of these two is the one to quote.
    let mut group = c.benchmark_group("esi/interleaved");
    let interleaved = |n: u64, ours: bool| {
        let (mut mine, mut theirs) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        for i in 0..n {
            let run_ours = || {
                let start = std::time::Instant::now();
                black_box(run(&cached, black_box(&page_bytes)).len());
                start.elapsed()
            };
            let run_floor = || {
                let start = std::time::Instant::now();
                black_box(memchr_splice(black_box(page.as_bytes()), &fragments).len());
                start.elapsed()
            };
            if i % 2 == 0 {
                mine += run_ours();
                theirs += run_floor();
            } else {
                theirs += run_floor();
                mine += run_ours();
            }
        }
        if ours { mine } else { theirs }
    };
    group.bench_function("assembler, cached fragments", |b| {
        b.iter_custom(|n| interleaved(n, true))
    });
    group.bench_function("memchr floor", |b| b.iter_custom(|n| interleaved(n, false)));
    group.finish();
}

criterion_group!(benches, assemble);
criterion_main!(benches);
