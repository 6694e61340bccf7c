use super::*;

#[test]
fn bounded_and_never_returns_another_keys_value() {
    let m: Memo<u32, u32> = Memo::new();
    for i in 0..(CAPACITY as u32 * 3) {
        let v: Result<u32, ()> = m.get_or(&i, |k| *k == i, || Ok((i, i * 2)));
        assert_eq!(v, Ok(i * 2));
        assert!(m.map.read().unwrap().len() <= CAPACITY);
    }
    // A hit whose stored key does not match is rebuilt, not returned.
    let v: Result<u32, ()> = m.get_or(&7u32, |_| false, || Ok((7, 99)));
    assert_eq!(v, Ok(99));
    // Errors are not cached.
    let e: Result<u32, &str> = m.get_or(&1_000_000u32, |_| true, || Err("no"));
    assert_eq!(e, Err("no"));
}
