use std::time::{Duration, Instant};

use super::*;

fn ok(doc: &str) {
    if let Err(r) = check(doc.as_bytes(), &XmlSettings::default()) {
        panic!("refused {doc:?}: {}", r.detail);
    }
}

fn refused(doc: &str) -> String {
    let r = check(doc.as_bytes(), &XmlSettings::default()).unwrap_err();
    assert_eq!(r.code, Code::InvalidRequest, "{}", r.detail);
    r.detail.into_owned()
}

const SOAP11: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
                  xmlns:pay="urn:corp:payments">
  <soapenv:Header/>
  <soapenv:Body>
    <pay:Submit currency="EUR">
      <pay:Amount>12.50</pay:Amount>
      <pay:Memo>Fish &amp; chips &#x263A; <![CDATA[<raw>]]></pay:Memo>
      <!-- batch 42 -->
    </pay:Submit>
  </soapenv:Body>
</soapenv:Envelope>
"#;

#[test]
fn soap_envelopes_are_accepted() {
    ok(SOAP11);
    ok(
        r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><m:ping xmlns:m="urn:x"/></env:Body></env:Envelope>"#,
    );
    // A UTF-8 byte order mark is fine.
    ok(&format!("\u{feff}{SOAP11}"));
}

#[test]
fn billion_laughs_is_refused_at_the_doctype_without_expanding() {
    let mut doc =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        doc.push_str(&format!(
            " <!ENTITY lol{i} \"{}\">\n",
            format!("&{prev};").repeat(10)
        ));
    }
    doc.push_str("]>\n<lolz>&lol9;</lolz>");
    let t = Instant::now();
    let detail = refused(&doc);
    let took = t.elapsed();
    assert_eq!(detail, "DOCTYPE is not allowed in XML bodies");
    assert!(took < Duration::from_millis(10), "{took:?}");
}

#[test]
fn xxe_is_refused_without_touching_the_file_or_network() {
    for doc in [
        r#"<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>"#,
        r#"<!DOCTYPE foo SYSTEM "http://127.0.0.1:1/evil.dtd"><foo/>"#,
        r#"<!DOCTYPE foo [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x"> %p;]><foo/>"#,
    ] {
        let t = Instant::now();
        assert_eq!(refused(doc), "DOCTYPE is not allowed in XML bodies");
        assert!(t.elapsed() < Duration::from_millis(10));
    }
    // Without a DOCTYPE the entity is simply undefined.
    assert!(refused("<foo>&xxe;</foo>").starts_with("undefined XML entity reference"));
    assert!(refused(r#"<foo a="&xxe;"/>"#).starts_with("undefined XML entity reference"));
}

#[test]
fn processing_instructions_are_refused_unless_allowed() {
    let doc = r#"<?xml version="1.0"?><?xml-stylesheet href="x.xsl"?><a/>"#;
    assert_eq!(refused(doc), "XML processing instructions are not allowed");
    let allow = XmlSettings {
        allow_processing_instructions: true,
        ..XmlSettings::default()
    };
    check(doc.as_bytes(), &allow).unwrap();
    assert_eq!(
        refused(r#"<a/><?xml version="1.0"?>"#),
        "XML declaration not at the start"
    );
}

#[test]
fn depth_and_attribute_limits() {
    let limits = XmlSettings {
        max_depth: 3,
        max_attributes: 2,
        ..XmlSettings::default()
    };
    check(b"<a><b><c/></b></a>", &limits).unwrap();
    let r = check(b"<a><b><c><d/></c></b></a>", &limits).unwrap_err();
    assert_eq!(r.detail, "XML nested deeper than 3 elements");
    let r = check(br#"<a x="1" y="2" z="3"/>"#, &limits).unwrap_err();
    assert_eq!(r.detail, "XML element with more than 2 attributes");

    // A deep document is refused at the limit, long before the end, in no time.
    let deep = "<a>".repeat(100_000);
    let t = Instant::now();
    let r = check(deep.as_bytes(), &XmlSettings::default()).unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(10));
    assert_eq!(r.detail, "XML nested deeper than 64 elements");

    let small = XmlSettings {
        max_bytes: Some(10),
        ..XmlSettings::default()
    };
    let r = check(b"<a>0123456789</a>", &small).unwrap_err();
    assert_eq!(r.code, Code::PayloadTooLarge);
}

#[test]
fn malformed_documents_are_refused_without_echo() {
    for (doc, want) in [
        ("", "XML has no root element"),
        ("   ", "XML has no root element"),
        ("<a>", "XML ends inside an element"),
        ("<a/><b/>", "XML has more than one root element"),
        ("hello<a/>", "text outside the XML root element"),
        ("<a/>trailing", "text outside the XML root element"),
    ] {
        assert_eq!(refused(doc), want, "{doc:?}");
    }
    // An encoding the check does not read in: 415, like a foreign charset parameter.
    for enc in ["ISO-8859-1", "UTF-7", "UTF-16"] {
        let doc = format!(r#"<?xml version="1.0" encoding="{enc}"?><a/>"#);
        let r = check(doc.as_bytes(), &XmlSettings::default()).unwrap_err();
        assert_eq!(r.code, Code::UnsupportedMediaType, "{enc}");
        assert_eq!(r.detail, "XML declares an encoding other than UTF-8");
    }
    for doc in [
        "<secret-tag></other>",
        "<a b='1' b='2'/>",
        "<a><!-- x -- y --></a>",
        "<a>AT&T</a>",
        "<a b=1/>",
        "<a b='x<y'/>",
    ] {
        let d = refused(doc);
        assert!(
            d.starts_with("malformed XML") || d.starts_with("undefined XML entity"),
            "{doc:?}: {d}"
        );
        assert!(!d.contains("secret"), "{d}");
    }
    let r = check(b"<a>\xff</a>", &XmlSettings::default()).unwrap_err();
    assert!(r.detail.starts_with("XML body is not UTF-8"));
}
