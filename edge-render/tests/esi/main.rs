//! The ESI assembler end to end, on a manual clock: document order, parallel fetches, time to first
//! byte, coalescing, caching, failures and their fallbacks, the limits, and hostile templates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use edge_cache::memory::MemoryCache;
use edge_core::testing::{Reply, TestFetcher};
use edge_core::{BoxStream, Error, ManualClock};
use edge_render::esi::{Assembler, EsiSettings, OnFailure, Variables};
use futures::Stream;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use proptest::prelude::*;

type Esi = Assembler<TestFetcher, MemoryCache<ManualClock>>;

struct Setup {
    clock: ManualClock,
    origin: TestFetcher,
    esi: Esi,
}

fn setup(settings: EsiSettings) -> Setup {
    let clock = ManualClock::new();
    let origin = TestFetcher::new().with_clock(clock.clone());
    let cache = MemoryCache::new(1 << 20, clock.clone());
    let esi = Assembler::new(
        origin.clone(),
        Some(cache),
        clock.clone(),
        clock.clone(),
        settings,
    );
    Setup { clock, origin, esi }
}

fn html(body: &'static str) -> Reply {
    Reply::ok(body).with_header(HeaderName::from_static("content-type"), "text/html")
}

fn template(chunks: Vec<&'static str>) -> BoxStream<'static, Result<Bytes, Error>> {
    Box::pin(futures::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect::<Vec<_>>(),
    ))
}

fn page(setup: &Setup, chunks: Vec<&'static str>) -> BoxStream<'static, Result<Bytes, Error>> {
    page_with(setup, chunks, Variables::default())
}

fn page_with(
    setup: &Setup,
    chunks: Vec<&'static str>,
    vars: Variables,
) -> BoxStream<'static, Result<Bytes, Error>> {
    setup.esi.assemble(
        Uri::from_static("http://shop.example/index.html"),
        vars,
        None,
        template(chunks),
    )
}

/// Polls once without waiting.
fn poll(
    stream: &mut BoxStream<'static, Result<Bytes, Error>>,
) -> Poll<Option<Result<Bytes, Error>>> {
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    Pin::new(stream).poll_next(&mut cx)
}

/// Reads the whole page, moving the clock on whenever it waits; the output, or the error after it.
fn read(
    clock: &ManualClock,
    mut stream: BoxStream<'static, Result<Bytes, Error>>,
) -> (String, Option<Error>) {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        match poll(&mut stream) {
            Poll::Ready(Some(Ok(chunk))) => out.extend_from_slice(&chunk),
            Poll::Ready(Some(Err(e))) => return (String::from_utf8(out).unwrap(), Some(e)),
            Poll::Ready(None) => return (String::from_utf8(out).unwrap(), None),
            Poll::Pending => clock.advance(Duration::from_millis(10)),
        }
    }
    panic!("the page never ended");
}

fn assembled(setup: &Setup, chunks: Vec<&'static str>) -> String {
    let (out, error) = read(&setup.clock, page(setup, chunks));
    assert!(error.is_none(), "{error:?}");
    out
}

#[test]
fn the_shell_leaves_before_a_slow_fragment_and_the_rest_keeps_its_order() {
    let s = setup(EsiSettings::default());
    s.origin
        .route("/slow", html("SLOW").with_latency(Duration::from_secs(1)));
    s.origin.route("/fast", html("FAST"));
    let mut stream = page(
        &s,
        vec![
            "<p>head</p><esi:include src=\"/slow\"/><p>mid</p>",
            "<esi:include src=\"/fast\"/>tail",
        ],
    );
    // Time to first byte: the bytes before the slow include go out at once.
    let Poll::Ready(Some(Ok(first))) = poll(&mut stream) else {
        panic!("no first byte")
    };
    assert_eq!(&first[..], b"<p>head</p>");
    for _ in 0..10 {
        assert!(
            poll(&mut stream).is_pending(),
            "held behind the slow fragment"
        );
    }
    // Both fetches are already under way: they run in parallel.
    assert_eq!((s.origin.hits("/slow"), s.origin.hits("/fast")), (1, 1));
    let (rest, error) = read(&s.clock, stream);
    assert!(error.is_none());
    assert_eq!(rest, "SLOW<p>mid</p>FASTtail");
    assert!(s.clock.elapsed() >= Duration::from_secs(1));
    assert!(
        s.clock.elapsed() < Duration::from_millis(1100),
        "not one fetch after the other"
    );
}

trait Elapsed {
    fn elapsed(&self) -> Duration;
}

impl Elapsed for ManualClock {
    fn elapsed(&self) -> Duration {
        edge_core::Clock::now(self).since_origin()
    }
}

#[test]
fn concurrent_pages_fetch_a_fragment_once_and_the_cache_keeps_it() {
    let s = setup(EsiSettings::default());
    s.origin.route(
        "/nav",
        html("NAV")
            .with_latency(Duration::from_millis(200))
            .with_header(HeaderName::from_static("cache-control"), "max-age=60"),
    );
    let pages: Vec<_> = (0..20)
        .map(|_| page(&s, vec!["<esi:include src=\"/nav\"/>"]))
        .collect();
    let mut outputs = vec![String::new(); pages.len()];
    let mut pages: Vec<_> = pages.into_iter().map(Some).collect();
    for _ in 0..1000 {
        let mut open = false;
        for (i, slot) in pages.iter_mut().enumerate() {
            if let Some(stream) = slot {
                match poll(stream) {
                    Poll::Ready(Some(Ok(chunk))) => {
                        outputs[i].push_str(std::str::from_utf8(&chunk).unwrap())
                    }
                    Poll::Ready(None) => *slot = None,
                    Poll::Ready(Some(Err(e))) => panic!("{e}"),
                    Poll::Pending => open = true,
                }
            }
        }
        if !open && pages.iter().all(Option::is_none) {
            break;
        }
        s.clock.advance(Duration::from_millis(10));
    }
    assert!(outputs.iter().all(|o| o == "NAV"), "{outputs:?}");
    assert_eq!(s.origin.hits("/nav"), 1, "one fetch for twenty pages");
    assert_eq!(assembled(&s, vec!["<esi:include src=\"/nav\"/>"]), "NAV");
    assert_eq!(s.origin.hits("/nav"), 1, "then from the cache");
    s.clock.advance(Duration::from_secs(61));
    assert_eq!(assembled(&s, vec!["<esi:include src=\"/nav\"/>"]), "NAV");
    assert_eq!(s.origin.hits("/nav"), 2, "expired after max-age");
}

#[test]
fn uncacheable_fragments_are_fetched_every_time() {
    let s = setup(EsiSettings::default());
    s.origin.route(
        "/me",
        html("ME").with_header(
            HeaderName::from_static("cache-control"),
            "private, max-age=60",
        ),
    );
    for _ in 0..3 {
        assert_eq!(assembled(&s, vec!["<esi:include src=\"/me\"/>"]), "ME");
    }
    assert_eq!(s.origin.hits("/me"), 3);
}

#[test]
fn failures_take_alt_then_onerror_then_except_then_the_default() {
    let s = setup(EsiSettings::default());
    s.origin.route(
        "/broken",
        Reply::status(http::StatusCode::INTERNAL_SERVER_ERROR),
    );
    s.origin.route("/alt", html("ALT"));
    s.origin.route("/ok", html("OK"));
    assert_eq!(
        assembled(&s, vec!["a<esi:include src=\"/broken\" alt=\"/alt\"/>b"]),
        "aALTb"
    );
    assert_eq!(
        assembled(
            &s,
            vec!["a<esi:include src=\"/broken\" onerror=\"continue\"/>b"]
        ),
        "ab"
    );
    assert_eq!(
        assembled(
            &s,
            vec![
                "<esi:try><esi:attempt>x<esi:include src=\"/ok\"/><esi:include src=\"/broken\"/></esi:attempt><esi:except>sorry</esi:except></esi:try>!"
            ]
        ),
        "sorry!"
    );
    assert_eq!(
        assembled(
            &s,
            vec![
                "<esi:try><esi:attempt><esi:include src=\"/ok\"/></esi:attempt><esi:except>sorry</esi:except></esi:try>"
            ]
        ),
        "OK"
    );
    // Unhandled: the documented default omits it and the page goes on.
    assert_eq!(
        assembled(&s, vec!["a<esi:include src=\"/broken\"/>b"]),
        "ab"
    );
    let abort = setup(EsiSettings::default().with_on_failure(OnFailure::Abort));
    abort
        .origin
        .route("/broken", Reply::status(http::StatusCode::BAD_GATEWAY));
    let (out, error) = read(
        &abort.clock,
        page(&abort, vec!["a<esi:include src=\"/broken\"/>b"]),
    );
    assert_eq!(out, "a");
    assert!(error.is_some());
}

#[test]
fn fragments_come_only_from_allowed_hosts_and_urls() {
    let s = setup(EsiSettings::default().allow_host("fragments.example"));
    s.origin.route("/x", html("X"));
    for src in [
        "http://evil.example/x",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "relative/x",
        "//evil.example/x",
    ] {
        let template = format!("<esi:include src=\"{src}\" onerror=\"continue\"/>");
        let template: &'static str = Box::leak(template.into_boxed_str());
        assert_eq!(assembled(&s, vec![template]), "", "{src}");
    }
    assert_eq!(s.origin.hits("/x"), 0, "none of them was fetched");
    assert_eq!(
        assembled(
            &s,
            vec!["<esi:include src=\"http://fragments.example/x\"/>"]
        ),
        "X"
    );
    // Header injection through the template's own src is refused; through a variable it is encoded.
    assert_eq!(
        assembled(
            &s,
            vec!["<esi:include src=\"/x\r\nHost: evil\" onerror=\"continue\"/>"]
        ),
        ""
    );
    let mut headers = HeaderMap::new();
    headers.insert("cookie", HeaderValue::from_static("user=a b&c"));
    let vars = Variables::from_request(&headers, None, None);
    s.origin.route("/u", html("U"));
    let (out, _) = read(
        &s.clock,
        page_with(
            &s,
            vec!["<esi:include src=\"/u?who=$(HTTP_COOKIE{user})\"/>"],
            vars,
        ),
    );
    assert_eq!(out, "U");
    let sent = s
        .origin
        .requests()
        .into_iter()
        .find(|r| r.uri.path() == "/u")
        .unwrap();
    assert_eq!(sent.uri.query(), Some("who=a%20b%26c"));
    assert!(
        sent.headers.get("cookie").is_none(),
        "fragments are fetched without the client's cookies"
    );
}

#[test]
fn nested_includes_loops_bombs_and_depth_are_bounded() {
    let s = setup(EsiSettings::default());
    s.origin
        .route("/outer", html("[<esi:include src=\"/inner\"/>]"));
    s.origin.route("/inner", html("inner"));
    assert_eq!(
        assembled(&s, vec!["<esi:include src=\"/outer\"/>"]),
        "[inner]"
    );
    // A fragment including itself, and two including each other, stop at the loop.
    s.origin.route(
        "/self",
        html("s<esi:include src=\"/self\" onerror=\"continue\"/>"),
    );
    assert_eq!(assembled(&s, vec!["<esi:include src=\"/self\"/>"]), "s");
    s.origin.route(
        "/a",
        html("a<esi:include src=\"/b\" onerror=\"continue\"/>"),
    );
    s.origin.route(
        "/b",
        html("b<esi:include src=\"/a\" onerror=\"continue\"/>"),
    );
    assert_eq!(assembled(&s, vec!["<esi:include src=\"/a\"/>"]), "ab");
    // The page including itself.
    s.origin.route("/index.html", html("never"));
    assert_eq!(
        assembled(
            &s,
            vec!["<esi:include src=\"/index.html\" onerror=\"continue\"/>"]
        ),
        ""
    );
    assert_eq!(s.origin.hits("/index.html"), 0);
    // Depth: d1 → d2 → d3 → d4; the default depth of 3 stops the fourth level.
    s.origin.route(
        "/d1",
        html("1<esi:include src=\"/d2\" onerror=\"continue\"/>"),
    );
    s.origin.route(
        "/d2",
        html("2<esi:include src=\"/d3\" onerror=\"continue\"/>"),
    );
    s.origin.route(
        "/d3",
        html("3<esi:include src=\"/d4\" onerror=\"continue\"/>"),
    );
    s.origin.route("/d4", html("4"));
    assert_eq!(assembled(&s, vec!["<esi:include src=\"/d1\"/>"]), "123");
    assert_eq!(s.origin.hits("/d4"), 0);
}

#[test]
fn a_fan_out_bomb_stops_at_the_fragment_budget() {
    let s = setup(EsiSettings::default().with_max_fragments(64));
    let ten = "<esi:include src=\"/ten\" onerror=\"continue\"/>".repeat(10);
    let ten: &'static str = Box::leak(ten.clone().into_boxed_str());
    s.origin.route(
        "/ten",
        html(Box::leak(
            format!(
                "x{}",
                "<esi:include src=\"/leaf\" onerror=\"continue\"/>".repeat(10)
            )
            .into_boxed_str(),
        )),
    );
    s.origin.route("/leaf", html("."));
    let out = assembled(&s, vec![ten, ten, ten, ten, ten, ten, ten, ten, ten, ten]);
    let fetched = s.origin.requests().len();
    assert!(fetched <= 64, "{fetched} fetches");
    assert!(out.len() <= 64 * 2, "{}", out.len());
}

#[test]
fn slow_and_oversized_fragments_fail_in_time() {
    let s = setup(EsiSettings::default().with_max_fragment_size(16));
    s.origin.route(
        "/hang",
        html("late").with_latency(Duration::from_secs(3600)),
    );
    s.origin.route("/big", html("0123456789abcdefXYZ"));
    s.origin.route("/alt", html("alt"));
    let started = edge_core::Clock::now(&s.clock);
    assert_eq!(
        assembled(&s, vec!["<esi:include src=\"/hang\" alt=\"/alt\"/>"]),
        "alt"
    );
    let took = edge_core::Clock::now(&s.clock).duration_since(started);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        assembled(&s, vec!["<esi:include src=\"/big\" alt=\"/alt\"/>"]),
        "alt"
    );
}

#[test]
fn choose_when_and_vars() {
    let s = setup(EsiSettings::default());
    let mut headers = HeaderMap::new();
    headers.insert("cookie", HeaderValue::from_static("group=beta; name=<Ada>"));
    headers.insert("host", HeaderValue::from_static("shop.example"));
    let vars = Variables::from_request(&headers, None, None);
    let (out, error) = read(
        &s.clock,
        page_with(
            &s,
            vec![
                "<esi:choose><esi:when test=\"$(HTTP_COOKIE{group})=='beta'\">B</esi:when><esi:when test=\"1==1\">second</esi:when><esi:otherwise>O</esi:otherwise></esi:choose>",
                "<esi:choose><esi:when test=\"broken ((\">never</esi:when><esi:otherwise>O</esi:otherwise></esi:choose>",
                "<esi:vars>hi $(HTTP_COOKIE{name}) at $(HTTP_HOST)</esi:vars> $(HTTP_HOST)",
            ],
            vars,
        ),
    );
    assert!(error.is_none());
    assert_eq!(out, "BOhi &lt;Ada&gt; at shop.example $(HTTP_HOST)");
}

#[test]
fn a_malformed_template_ends_after_what_came_before() {
    let s = setup(EsiSettings::default());
    for (chunks, before) in [
        (vec!["good ", "<esi:frobnicate/> never"], "good "),
        (vec!["a<esi:vars>b"], "a"),
        (vec!["x</esi:try>"], "x"),
        (vec!["<esi:include src=\"/never-closed"], ""),
    ] {
        let (out, error) = read(&s.clock, page(&s, chunks.clone()));
        assert_eq!(out, before, "{chunks:?}");
        assert!(error.is_some(), "{chunks:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// However the template is split, the page is the same.
    #[test]
    fn the_split_never_changes_the_page(cuts in proptest::collection::vec(0usize..400, 0..8)) {
        let doc = "<html><esi:include src=\"/a\"/><p>one</p><esi:try><esi:attempt><esi:include src=\"/broken\"/></esi:attempt><esi:except>except</esi:except></esi:try><!--esi <esi:include src=\"/b\"/> --><esi:remove>gone</esi:remove><esi:choose><esi:when test=\"1==1\">w</esi:when></esi:choose></html>";
        let s = setup(EsiSettings::default());
        s.origin.route("/a", html("A"));
        s.origin.route("/b", html("B"));
        s.origin.route("/broken", Reply::status(http::StatusCode::NOT_FOUND));
        let whole = assembled(&s, vec![doc]);
        prop_assert_eq!(whole.as_str(), "<html>A<p>one</p>except B w</html>");
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (doc.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks: Vec<&'static str> = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&doc[last..p]);
            last = p;
        }
        chunks.push(&doc[last..]);
        prop_assert_eq!(assembled(&s, chunks), whole);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// A template with a bad tag gives, however it is split, the bytes before the tag and then the
    /// error: never nothing, never more.
    #[test]
    fn a_bad_tag_ends_the_page_after_the_same_bytes_whatever_the_split(
        which in 0usize..5,
        cuts in proptest::collection::vec(0usize..200, 0..6),
    ) {
        const BAD: [&str; 5] = [
            "<esi:include/>",
            "<esi:include src=/a/>",
            "<esi:frobnicate/>",
            "<esi:include src=\"/a\"\u{0}/>",
            "<esi:vars>",
        ];
        let before = "<html><p>one</p><esi:include src=\"/a\"/><p>two</p>";
        let doc: &'static str = Box::leak(format!("{before}{} tail</html>", BAD[which]).into_boxed_str());
        let s = setup(EsiSettings::default());
        s.origin.route("/a", html("A"));
        let (whole, error) = read(&s.clock, page(&s, vec![doc]));
        prop_assert_eq!(whole.as_str(), "<html><p>one</p>A<p>two</p>");
        prop_assert!(error.is_some());
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (doc.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks: Vec<&'static str> = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&doc[last..p]);
            last = p;
        }
        chunks.push(&doc[last..]);
        let (split, error) = read(&s.clock, page(&s, chunks));
        prop_assert_eq!(split, whole);
        prop_assert!(error.is_some());
    }
}

/// Include URLs resolve as RFC 3986 says: other schemes and unparseable references are refused without
/// a fetch, `//host/x` is that host (and meets the allow-list), a trailing dot is the same host.
#[test]
fn include_urls_resolve_as_rfc_3986_says() {
    let s = setup(EsiSettings::default().allow_host("cdn.example"));
    s.origin.route("/", html("ROOT"));
    s.origin.route("/x", html("X"));
    for src in ["javascript:alert(1)", "data:text/html,hi", "not a url"] {
        let doc: &'static str = Box::leak(
            format!("[<esi:include src=\"{src}\" onerror=\"continue\"/>]").into_boxed_str(),
        );
        assert_eq!(assembled(&s, vec![doc]), "[]", "{src}");
    }
    assert_eq!(s.origin.hits("/"), 0, "nothing was fetched for them");
    // A network-path reference is another host: refused unless allowed.
    let other = assembled(
        &s,
        vec!["[<esi:include src=\"//evil.example/x\" onerror=\"continue\"/>]"],
    );
    assert_eq!(other, "[]");
    assert_eq!(s.origin.hits("/x"), 0);
    let allowed = assembled(&s, vec!["[<esi:include src=\"//cdn.example/x\"/>]"]);
    assert_eq!(allowed, "[X]");
    assert_eq!(
        s.origin.requests().last().unwrap().uri.to_string(),
        "http://cdn.example/x"
    );
    let dotted = assembled(&s, vec!["[<esi:include src=\"http://Shop.Example./x\"/>]"]);
    assert_eq!(
        dotted, "[X]",
        "the page's own host, written with a trailing dot"
    );
    // A relative path is relative to the page's directory.
    let relative = assembled(&s, vec!["[<esi:include src=\"x\"/>]"]);
    assert_eq!(relative, "[X]");
}

#[test]
fn a_large_page_in_many_chunks_keeps_every_byte() {
    let s = setup(EsiSettings::default());
    let filler = "<div class=\"product\"><h2>Kettle</h2><p>1.2 l &amp; more.</p><a href=\"/p/42\">more</a></div>\n";
    let mut page = String::from("<!DOCTYPE html><html><body>\n");
    let mut expected = page.clone();
    for i in 0..10 {
        let path: &'static str = Box::leak(format!("/fragments/{i}").into_boxed_str());
        let body: &'static str = Box::leak(format!("<section>{i}</section>").into_boxed_str());
        s.origin.route(path, Reply::ok(body));
        page.push_str(&filler.repeat(150));
        expected.push_str(&filler.repeat(150));
        page.push_str(&format!("<esi:include src=\"{path}\"/>\n"));
        expected.push_str(&format!("{body}\n"));
    }
    page.push_str("</body></html>\n");
    expected.push_str("</body></html>\n");
    let page: &'static str = Box::leak(page.into_boxed_str());
    let chunks: Vec<&'static str> = page
        .as_bytes()
        .chunks(16 * 1024)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let out = assembled(&s, chunks);
    let diverges = out.bytes().zip(expected.bytes()).position(|(a, b)| a != b);
    assert_eq!(
        (out.len(), diverges),
        (expected.len(), None),
        "first difference at {diverges:?}"
    );
}
