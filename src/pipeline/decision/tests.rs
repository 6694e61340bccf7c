use std::net::IpAddr;

use http::header::HeaderMap;
use http::HeaderValue;

use super::cert::{forwarded_chain, percent_decode, xfcc_pem, XFCC};
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn cidr_blocks() {
    let c = Cidr::parse("10.1.0.0/16").unwrap();
    assert!(c.contains(ip("10.1.255.3")));
    assert!(!c.contains(ip("10.2.0.1")));
    assert!(
        c.contains(ip("::ffff:10.1.0.9")),
        "IPv4-mapped counts as IPv4"
    );
    assert!(!c.contains(ip("::1")));
    let one = Cidr::parse("127.0.0.1").unwrap();
    assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
    let v6 = Cidr::parse("fd00::/8").unwrap();
    assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
    assert!(Cidr::parse("0.0.0.0/0").unwrap().contains_everything());
    assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
    for bad in ["10.1.0.1/16", "10.0.0.0/33", "x/8", "10.0.0.0/", "::/129"] {
        assert!(Cidr::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn client_ip_is_the_last_forwarded_for_element() {
    let mut h = HeaderMap::new();
    assert_eq!(client_ip(&h).unwrap(), None);
    h.append(
        "x-forwarded-for",
        HeaderValue::from_static("6.6.6.6, 10.0.0.7"),
    );
    assert_eq!(client_ip(&h).unwrap(), Some(ip("10.0.0.7")));
    h.append("x-forwarded-for", HeaderValue::from_static("[fd00::5]:443"));
    assert_eq!(client_ip(&h).unwrap(), Some(ip("fd00::5")));
    h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.9:8080"));
    assert_eq!(client_ip(&h).unwrap(), Some(ip("10.0.0.9")));
}

#[test]
fn a_forwarded_for_that_names_no_address_is_refused_not_read_as_the_proxy() {
    // Each would otherwise make the caller the proxy's own address.
    for bad in [
        "unknown",
        "unix:",
        "10.0.0.7, ",
        "10.0.0.7,",
        "",
        "10.0.0.7 evil",
        "_hidden",
    ] {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(bad).unwrap());
        let r = client_ip(&h).unwrap_err();
        assert_eq!(r.code, Code::InvalidRequest, "{bad:?}");
    }
    let mut h = HeaderMap::new();
    h.insert(
        "x-forwarded-for",
        HeaderValue::from_bytes(b"10.0.0.7, \xff").unwrap(),
    );
    assert!(client_ip(&h).is_err(), "not UTF-8");
}

#[test]
fn xfcc_prefers_chain_and_refuses_a_bare_uri() {
    assert_eq!(
        xfcc_pem(
            r#"By=spiffe://a/b;Hash=ab;Cert="X%0A";Chain="Y%0A";Subject="CN=a,O=b";URI=spiffe://a/c"#
        )
        .ok()
        .as_deref(),
        Some("Y%0A")
    );
    assert_eq!(xfcc_pem("Hash=ab;Cert=Z").ok().as_deref(), Some("Z"));
    assert!(xfcc_pem("By=spiffe://a/b;URI=spiffe://a/c").is_err());
    assert!(xfcc_pem("Cert=A,Cert=B").is_err(), "two elements");
    assert!(xfcc_pem(r#"Cert=A;Subject="x,y""#).is_ok(), "quoted comma");
}

#[test]
fn percent_decoding_keeps_plus() {
    assert_eq!(
        percent_decode("a+b%2Bc%0A").as_deref(),
        Some(&b"a+b+c\n"[..])
    );
    assert!(percent_decode("%G0").is_none());
    assert!(percent_decode("%4").is_none());
}

#[test]
fn empty_or_absent_is_no_certificate_and_garbage_is_refused() {
    let mut h = HeaderMap::new();
    assert!(matches!(forwarded_chain(&XFCC, &h), Ok(None)));
    h.insert(&XFCC, HeaderValue::from_static(""));
    assert!(matches!(forwarded_chain(&XFCC, &h), Ok(None)));
    h.insert(&XFCC, HeaderValue::from_static("URI=spiffe://corp/x"));
    assert!(forwarded_chain(&XFCC, &h).is_err());
    let pem = http::HeaderName::from_static("x-client-pem");
    h.insert(&pem, HeaderValue::from_static("not%20a%20certificate"));
    assert!(forwarded_chain(&pem, &h).is_err());
}
