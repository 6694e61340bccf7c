//! The native request head parser and the body framing it picks, on any bytes: fed whole and in
//! two pieces split where the first input byte says. Never panics; both feeds frame alike.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::transport::fuzzing::native_trace;

fuzz_target!(|input: &[u8]| {
    let Some((&cut, stream)) = input.split_first() else {
        return;
    };
    let whole = native_trace(stream, &[]);
    let cut = usize::from(cut) * stream.len() / 256;
    let split = native_trace(stream, &[cut]);
    assert!(whole.body_bytes <= stream.len() as u64);
    // Heads, bodies ended and the verdict (the decoded bytes themselves are h1_chunked's).
    assert_eq!(
        (
            &whole.heads,
            whole.bodies_ended,
            whole.refused,
            whole.in_body
        ),
        (
            &split.heads,
            split.bodies_ended,
            split.refused,
            split.in_body
        ),
        "split at {cut}"
    );
});
