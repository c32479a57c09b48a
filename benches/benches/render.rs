//! HTML escaping: edge-render's escapers next to the `html-escape` crate on the same text: a ~2 KB product
//! description with a few characters to escape and some non-ASCII, and a short attribute value.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edge_render::html::escape;

fn description() -> String {
    let paragraph = "The pour-over kettle holds 1.2 l & heats in < 4 minutes; its gooseneck spout \
                     gives a slow, even pour (ideal for V60 > 20 g doses). Crème brûlée not included. ";
    paragraph.repeat(2048 / paragraph.len() + 1)
}

fn escaping(c: &mut Criterion) {
    let text = description();
    let attribute = "Ada \"the first programmer\" Lovelace & Babbage's <engine>".to_owned();

    let mut group = c.benchmark_group("render/escape text");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("edge_render::html::escape::text", |b| {
        let mut out = String::with_capacity(text.len() * 2);
        b.iter(|| {
            out.clear();
            escape::text(black_box(&text), &mut out);
            black_box(out.len())
        })
    });
    group.bench_function("html_escape::encode_text_to_string", |b| {
        let mut out = String::with_capacity(text.len() * 2);
        b.iter(|| {
            out.clear();
            html_escape::encode_text_to_string(black_box(&text), &mut out);
            black_box(out.len())
        })
    });
    group.finish();

    let mut group = c.benchmark_group("render/escape attribute");
    group.throughput(Throughput::Bytes(attribute.len() as u64));
    group.bench_function("edge_render::html::escape::attribute", |b| {
        let mut out = String::with_capacity(256);
        b.iter(|| {
            out.clear();
            escape::attribute(black_box(&attribute), &mut out);
            black_box(out.len())
        })
    });
    group.bench_function(
        "html_escape::encode_double_quoted_attribute_to_string",
        |b| {
            let mut out = String::with_capacity(256);
            b.iter(|| {
                out.clear();
                html_escape::encode_double_quoted_attribute_to_string(
                    black_box(&attribute),
                    &mut out,
                );
                black_box(out.len())
            })
        },
    );
    group.finish();

    // Both must agree on what the text means (html-escape leaves `>` alone in text; both are valid).
    let mut ours = String::new();
    escape::text(&text, &mut ours);
    let mut theirs = String::new();
    html_escape::encode_text_to_string(&text, &mut theirs);
    assert_eq!(ours.replace("&gt;", ">"), theirs.replace("&gt;", ">"));
}

criterion_group!(benches, escaping);
criterion_main!(benches);
