//! The differential: any byte stream, fed to the framing guard and to the native server core.
//! Every head the native core accepts, the guard passed too, framed the same way; a body native
//! reads to its end, the guard saw end in the same place (so the next head starts at the same
//! byte for both). The guard, fed in pieces, ends where it ends fed byte by byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::transport::fuzzing::{guard_trace, native_trace, Framed};

fuzz_target!(|input: &[u8]| {
    let (cuts, stream) = input.split_at(input.len().min(3));
    let cuts: Vec<usize> = cuts
        .iter()
        .map(|c| usize::from(*c) * stream.len() / 256)
        .collect();
    let native = native_trace(stream, &cuts);
    let (guard, pieces) = guard_trace(stream, &cuts);
    assert_eq!(guard.flagged, pieces.flagged, "guard, cuts {cuts:?}");
    assert_eq!(
        guard.bodies_ended, pieces.bodies_ended,
        "guard, cuts {cuts:?}"
    );
    for (i, framed) in native.heads.iter().enumerate() {
        let expected = match framed {
            Framed::None => Some(0),
            Framed::Length(n) => Some(*n),
            Framed::Chunked => None,
        };
        assert_eq!(
            guard.heads.get(i),
            Some(&expected),
            "head {i}: native {framed:?}, guard {:?} (flagged {})",
            guard.heads,
            guard.flagged
        );
    }
    // Every body native read to its end, the guard saw end too, without flagging it.
    assert!(
        guard.bodies_ended >= native.bodies_ended,
        "native ended {} bodies, the guard {}",
        native.bodies_ended,
        guard.bodies_ended
    );
});
