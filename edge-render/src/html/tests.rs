use std::time::Duration;

use futures_util::FutureExt;

use super::*;

#[test]
fn the_shell_leaves_before_a_slow_section() {
    futures::executor::block_on(async {
        let (mut page, mut body) = stream(HtmlSettings::default());
        page.raw_html_unchecked("<!DOCTYPE html><main>").unwrap();
        page.flush().await.unwrap();
        // The client has the shell while the section's data is still on its way.
        let first = body.next().now_or_never().flatten().unwrap().unwrap();
        assert_eq!(&first[..], b"<!DOCTYPE html><main>");
        assert!(body.next().now_or_never().is_none(), "nothing more yet");
        page.text("late").unwrap();
        page.finish().await.unwrap();
        assert_eq!(&body.next().await.unwrap().unwrap()[..], b"late");
        assert!(body.next().await.is_none());
    });
}

#[test]
fn a_slow_client_makes_flush_wait() {
    let (mut page, mut body) = stream(HtmlSettings::default().with_max_chunks(2));
    for i in 0..2 {
        page.text(&i.to_string()).unwrap();
        assert!(page.flush().now_or_never().is_some(), "room for two chunks");
    }
    page.text("3").unwrap();
    let mut third = Box::pin(page.flush());
    assert!(
        third.as_mut().now_or_never().is_none(),
        "waits for the client"
    );
    drop(third);
    assert!(body.next().now_or_never().is_some());
}

#[test]
fn a_full_buffer_refuses_and_writes_nothing() {
    let (mut page, _body) = stream(HtmlSettings::default().with_max_buffer(16));
    page.text("0123456789").unwrap();
    assert_eq!(
        page.text("&&&"),
        Err(HtmlError::BufferFull),
        "escapes count"
    );
    assert_eq!(page.buffered(), 10);
    assert_eq!(
        page.open("section").map(|_| ()),
        Err(HtmlError::BufferFull),
        "the start tag would not fit"
    );
    assert_eq!(page.buffered(), 10);
    page.text("abcdef").unwrap();
    assert_eq!(page.buffered(), 16);
}

#[test]
fn names_and_attributes_from_data_are_refused() {
    let (mut page, _body) = stream(HtmlSettings::default());
    assert_eq!(
        page.open("div onload=x").map(|_| ()),
        Err(HtmlError::InvalidName("div onload=x"))
    );
    for forbidden in ["onclick", "ONERROR", "style", "href", "src", "srcset"] {
        let tag = page.open("div").unwrap();
        assert_eq!(
            tag.attr(forbidden, "x").map(|_| ()),
            Err(HtmlError::ForbiddenAttribute(forbidden))
        );
        assert_eq!(page.buffered(), 0, "the whole tag is taken back");
    }
    assert!(page.open("p").unwrap().flag("onmouseover").is_err());
    assert_eq!(page.buffered(), 0);
    page.open("img")
        .unwrap()
        .url_attr("src", "/cat.jpg")
        .unwrap()
        .attr("alt", "a \"cat\"")
        .unwrap()
        .flag("hidden")
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(
        page.buffer,
        r#"<img src="/cat.jpg" alt="a &quot;cat&quot;" hidden>"#
    );
    // A tag never finished leaves nothing behind.
    let _ = page.open("b").unwrap().attr("title", "x").unwrap();
    assert_eq!(
        page.buffer,
        r#"<img src="/cat.jpg" alt="a &quot;cat&quot;" hidden>"#
    );
}

#[test]
fn a_client_that_left_is_a_typed_error() {
    futures::executor::block_on(async {
        let (mut page, body) = stream(HtmlSettings::default());
        drop(body);
        page.text("x").unwrap();
        assert_eq!(page.flush().await, Err(HtmlError::Closed));
    });
}

#[test]
fn the_body_streams_through_the_sdk_body() {
    futures::executor::block_on(async {
        let (mut page, body) = stream(HtmlSettings::default());
        let body = body.into_body();
        page.text("a").unwrap();
        page.flush().await.unwrap();
        page.text("b").unwrap();
        page.finish().await.unwrap();
        assert_eq!(&body.collect(1024).await.unwrap()[..], b"ab");
    });
    let _ = Duration::ZERO;
}

/// Issue 20, item 3: what carries script by another route than a URL is refused from data, and
/// `url_attr` takes only URL attributes.
#[test]
fn script_by_other_routes_is_refused_from_data() {
    let (mut page, _body) = stream(HtmlSettings::default());
    for (element, attribute) in [
        ("iframe", "srcdoc"),
        ("meta", "http-equiv"),
        ("meta", "content"),
        ("animate", "attributeName"),
        ("animate", "values"),
        ("set", "to"),
        ("animateTransform", "from"),
        ("animate", "by"),
        ("div", "style"),
        ("button", "formaction"),
        ("object", "codebase"),
        ("a", "xlink:href"),
    ] {
        let tag = page.open(element).unwrap();
        assert_eq!(
            tag.attr(attribute, "x").map(|_| ()),
            Err(HtmlError::ForbiddenAttribute(attribute)),
            "{element} {attribute}"
        );
    }
    // Not a way around it: url_attr takes URL attributes only.
    for attribute in ["onclick", "style", "srcdoc", "title"] {
        let tag = page.open("div").unwrap();
        assert_eq!(
            tag.url_attr(attribute, "alert(1)").map(|_| ()),
            Err(HtmlError::ForbiddenAttribute(attribute)),
            "{attribute}"
        );
    }
    // `to` on an ordinary element is just data; `content` on a non-meta too.
    page.open("div")
        .unwrap()
        .attr("to", "x")
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(page.buffered(), "<div to=\"x\">".len());
}

/// Issue 20, items 4 and 5: the writer knows the element it is in, and active URLs stay on the page's
/// origin or a trusted host.
#[test]
fn the_writer_knows_its_element_and_active_urls_stay_home() {
    futures::executor::block_on(async {
        let (mut page, body) = stream(HtmlSettings::default());
        let reader = async move { body.collect_string().await.unwrap() };
        let writer = async move {
            page.trust_host("cdn.example");
            page.open("script").unwrap().finish().unwrap();
            assert_eq!(
                page.text("alert(1)"),
                Err(HtmlError::RawTextElement("script")),
                "no escaped text inside a script"
            );
            page.close("script").unwrap();
            page.open("style").unwrap().finish().unwrap();
            assert!(page.text("a{}").is_err());
            page.close("style").unwrap();
            page.open("pre").unwrap().finish().unwrap();
            page.text("\nfirst line").unwrap();
            page.close("pre").unwrap();
            page.open("textarea").unwrap().finish().unwrap();
            page.text("</textarea><b>").unwrap();
            page.close("textarea").unwrap();
            for (element, attribute, url) in [
                ("script", "src", "/app.js"),
                ("script", "src", "https://cdn.example/lib.js"),
                ("script", "src", "https://evil.example/x.js"),
                ("script", "src", "//evil.example/x.js"),
                ("script", "src", "/\\evil.example/x.js"),
                ("iframe", "src", "https://cdn.example.:443/embed"),
                ("base", "href", "https://evil.example/"),
                ("object", "data", "http://cdn.example/plugin"),
                ("a", "href", "https://elsewhere.example/page"),
            ] {
                page.open(element)
                    .unwrap()
                    .url_attr(attribute, url)
                    .unwrap()
                    .finish()
                    .unwrap();
            }
            page.finish().await.unwrap();
        };
        let (html, ()) = futures::join!(reader, writer);
        let inert = "about:invalid#edge-unsafe-url";
        assert_eq!(
            html,
            format!(
                "<script></script><style></style><pre>\n\nfirst line</pre>\
                 <textarea>&lt;/textarea&gt;&lt;b&gt;</textarea>\
                 <script src=\"/app.js\"><script src=\"https://cdn.example/lib.js\">\
                 <script src=\"{inert}\"><script src=\"{inert}\"><script src=\"{inert}\">\
                 <iframe src=\"https://cdn.example.:443/embed\"><base href=\"{inert}\">\
                 <object data=\"{inert}\"><a href=\"https://elsewhere.example/page\">"
            )
        );
    });
}
