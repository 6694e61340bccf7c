//! The upstream client's response head parse and body framing on any bytes, whole and in pieces:
//! never panics, never more data than was sent, the same answer however the bytes arrive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::transport::fuzzing::{upstream_response, Answer};

fuzz_target!(|input: &[u8]| {
    // First byte: bit 0 says the request was HEAD; the next two bytes are cut points.
    let Some((&flags, rest)) = input.split_first() else {
        return;
    };
    let (cuts, bytes) = rest.split_at(rest.len().min(2));
    let cuts: Vec<usize> = cuts
        .iter()
        .map(|c| usize::from(*c) * bytes.len() / 256)
        .collect();
    let head_request = flags & 1 == 1;
    let once = upstream_response(bytes, &[], head_request);
    let pieces = upstream_response(bytes, &cuts, head_request);
    if let Answer::Final { data, .. } = &once {
        assert!(data.len() <= bytes.len());
    }
    assert_eq!(once, pieces, "cuts {cuts:?}");
});
