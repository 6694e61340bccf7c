//! The request chunked decoder on any bytes in any pieces: never panics, never returns more data
//! than the input held, and agrees with a one-shot decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::transport::fuzzing::request_chunked;

fuzz_target!(|input: &[u8]| {
    // The first four bytes are cut points (scaled to the body's length), the rest the body.
    let (cuts, body) = input.split_at(input.len().min(4));
    let cuts: Vec<usize> = cuts
        .iter()
        .map(|c| usize::from(*c) * body.len() / 256)
        .collect();
    let (once, once_end) = request_chunked(body, &[]);
    let (pieces, pieces_end) = request_chunked(body, &cuts);
    assert!(once.len() <= body.len());
    assert_eq!(once, pieces, "cuts {cuts:?}");
    assert_eq!(once_end, pieces_end, "cuts {cuts:?}");
});
