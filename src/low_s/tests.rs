use super::*;

#[test]
fn normalize_flips_high_s_and_is_idempotent() {
    let mut sig = [0u8; 64];
    sig[32..].copy_from_slice(&P256_N);
    sig[63] -= 1; // s = n - 1: high
    assert!(!is_low_s(&sig));
    normalize(&mut sig);
    assert!(is_low_s(&sig));
    let mut one = [0u8; 32];
    one[31] = 1;
    assert_eq!(&sig[32..], &one);
    let before = sig;
    normalize(&mut sig);
    assert_eq!(sig, before);
    let mut half = [0u8; 96];
    half[48..].copy_from_slice(&P384_HALF);
    assert!(is_low_s(&half));
    half[95] += 1;
    assert!(!is_low_s(&half));
    assert!(!is_low_s(&[0u8; 65]));
}
