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
