use super::*;

#[derive(Debug, Clone, PartialEq)]
struct Mine(u32);

#[test]
fn a_memo_keeps_one_value_of_its_owners_type() {
    let memo = Memo::default();
    assert_eq!(memo.read(|m: &Mine| Some(m.clone())), None);
    memo.keep(Mine(7));
    assert_eq!(memo.read(|m: &Mine| Some(m.clone())), Some(Mine(7)));
    // Another type finds nothing: no mechanism reads another's memo by mistake.
    assert_eq!(memo.read(|n: &u32| Some(*n)), None);
    memo.keep(Mine(8));
    assert_eq!(memo.read(|m: &Mine| Some(m.0)), Some(8));
    // A copy starts empty (its first use recomputes).
    assert_eq!(memo.clone().read(|m: &Mine| Some(m.0)), None);
}

#[test]
fn leaf_thumbprint_is_of_the_first_certificate() {
    use base64::Engine as _;
    use sha2::Digest as _;
    assert_eq!(leaf_thumbprint(&[]), None);
    let leaf = CertificateDer::from(vec![1u8, 2, 3]);
    let other = CertificateDer::from(vec![4u8]);
    let want =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest([1u8, 2, 3]));
    assert_eq!(leaf_thumbprint(&[leaf, other]), Some(want));
}

#[test]
fn per_worker_slots_are_the_workers_own() {
    let slots = std::sync::Arc::new(PerWorker::<u32>::new());
    assert_eq!(slots.read(|v| Some(*v)), None);
    slots.keep(7);
    assert_eq!(slots.read(|v| Some(*v)), Some(7));
    assert_eq!(slots.read(|v| (*v == 8).then_some(*v)), None);
    // Another worker sees its own slot, not this thread's (slot 0 here).
    let other = slots.clone();
    std::thread::spawn(move || {
        set_worker_index(3);
        assert_eq!(other.read(|v| Some(*v)), None);
        other.keep(9);
        assert_eq!(other.read(|v| Some(*v)), Some(9));
    })
    .join()
    .unwrap();
    assert_eq!(slots.read(|v| Some(*v)), Some(7));
    slots.keep(8);
    assert_eq!(slots.read(|v| Some(*v)), Some(8));
}

/// A self-signed certificate valid until `until` (year, month, day).
fn cert_until(until: (i32, u8, u8)) -> CertificateDer<'static> {
    let mut params = rcgen::CertificateParams::new(vec!["leaf.test".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().clone()
}

#[test]
fn a_connections_leaf_facts_are_of_its_own_chain_and_kept() {
    let a = cert_until((2031, 1, 2));
    let b = cert_until((2032, 3, 4));
    let ta = TlsInfo::new(None, false, vec![a.clone(), b.clone()]);
    let tb = TlsInfo::new(None, false, vec![b.clone()]);
    for _ in 0..2 {
        // Asked twice: the kept answer is the one worked out from the chain.
        assert_eq!(
            ta.leaf_thumbprint(),
            leaf_thumbprint(std::slice::from_ref(&a)).as_deref()
        );
        assert_eq!(
            tb.leaf_thumbprint(),
            leaf_thumbprint(std::slice::from_ref(&b)).as_deref()
        );
        assert_eq!(ta.leaf_not_after(), not_after(&a));
        assert_eq!(tb.leaf_not_after(), not_after(&b));
    }
    assert_ne!(ta.leaf_thumbprint(), tb.leaf_thumbprint());
    let secs =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(ta.leaf_not_after().map(secs), Some(1_925_078_400)); // 2031-01-02T00:00:00Z
    assert_eq!(tb.leaf_not_after().map(secs), Some(1_961_971_200)); // 2032-03-04T00:00:00Z
                                                                    // A copy keeps what was worked out (the chain is the same); no chain, no facts.
    assert_eq!(ta.clone().leaf_thumbprint(), ta.leaf_thumbprint());
    let none = TlsInfo::new(None, false, Vec::new());
    assert_eq!(
        (none.leaf_thumbprint(), none.leaf_not_after()),
        (None, None)
    );
    // Not a certificate: no `notAfter`, but a thumbprint still (it is of the bytes).
    let junk = TlsInfo::new(
        None,
        false,
        vec![CertificateDer::from(vec![0x30u8, 0x03, 1, 2, 3])],
    );
    assert_eq!(junk.leaf_not_after(), None);
    assert!(junk.leaf_thumbprint().is_some());
}

/// `Hop::for_host` keeps the first host's fields: every host, before and after it, gets exactly
/// what a fresh rendering gives, whether the kept one is a plain host or one `Forwarded` does
/// not name.
#[test]
fn a_hops_kept_host_fields_are_each_hosts_own() {
    use http::HeaderValue;
    let hosts = [
        Some("a.example"),
        Some("a.example"),
        Some("b.example"),
        None,
        Some("a_b.example"),
        Some("a.example"),
        Some("a.exampl"),
        Some("a.example."),
        Some("[2001:db8::1]"),
    ];
    for first in [Some("a.example"), Some("a_b.example"), None] {
        let hop = Hop::new("192.0.2.1:4000".parse().unwrap(), "https");
        let fresh = |h: Option<&str>| {
            (
                hop.forwarded(h),
                h.and_then(|h| HeaderValue::from_str(h).ok()),
            )
        };
        for host in std::iter::once(first).chain(hosts) {
            assert_eq!(hop.for_host(host), fresh(host), "{first:?} then {host:?}");
        }
        // A copy (a `ConnInfo` clone) answers the same.
        let copy = hop.clone();
        for host in hosts {
            assert_eq!(
                copy.for_host(host),
                fresh(host),
                "{first:?}, copied: {host:?}"
            );
        }
    }
    let hop = Hop::new("192.0.2.1:4000".parse().unwrap(), "http");
    assert_eq!(
        hop.for_host(Some("a.example")).0,
        "for=\"192.0.2.1:4000\";proto=http;host=\"a.example\""
    );
    assert_eq!(
        hop.for_host(Some("b.example")).0,
        "for=\"192.0.2.1:4000\";proto=http;host=\"b.example\""
    );
}
