use std::borrow::Cow;
use std::time::SystemTime;

use futures_util::FutureExt as _;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::InstrumentationScope;

use super::*;

fn span(name: &str) -> SpanData {
    SpanData {
        span_context: SpanContext::empty_context(),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: Cow::Owned(name.to_owned()),
        start_time: SystemTime::UNIX_EPOCH,
        end_time: SystemTime::UNIX_EPOCH,
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: Default::default(),
        links: Default::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("test").build(),
    }
}

fn queue() -> (Queue, Arc<Shared>, Arc<Metrics>) {
    let shared = Arc::new(Shared::default());
    let metrics = Arc::new(Metrics::default());
    let q = Queue {
        shared: shared.clone(),
        metrics: metrics.clone(),
    };
    (q, shared, metrics)
}

/// Whether the export task would wake now (consumes the wake-up if there is one).
fn woken(shared: &Shared) -> bool {
    shared.wake.notified().now_or_never().is_some()
}

#[test]
fn ending_spans_wakes_the_exporter_only_once_a_whole_batch_waits() {
    let (q, shared, _) = queue();
    for i in 0..MAX_BATCH - 1 {
        q.on_end(span(&format!("s{i}")));
        assert!(!woken(&shared), "woken after {} spans", i + 1);
    }
    q.on_end(span("last of the batch"));
    assert!(
        woken(&shared),
        "a whole batch waits: the exporter must be woken"
    );
    // The next batch starts counting again.
    q.on_end(span("next"));
    assert!(!woken(&shared));
}

#[test]
fn batches_take_the_oldest_spans_first_and_leave_room_for_the_next() {
    let (q, shared, _) = queue();
    for i in 0..MAX_BATCH + 3 {
        q.on_end(span(&format!("s{i}")));
    }
    let first = shared.take_batch();
    assert_eq!(first.len(), MAX_BATCH);
    assert_eq!(first[0].name, "s0");
    assert_eq!(first[MAX_BATCH - 1].name, format!("s{}", MAX_BATCH - 1));
    let rest = shared.take_batch();
    assert_eq!(
        rest.iter().map(|s| s.name.as_ref()).collect::<Vec<_>>(),
        ["s512", "s513", "s514"]
    );
    assert!(
        shared.spans().capacity() >= MAX_BATCH,
        "room kept for a batch"
    );
    assert!(shared.take_batch().is_empty());
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let (q, shared, metrics) = queue();
    for i in 0..QUEUE + 5 {
        q.on_end(span(&format!("s{i}")));
    }
    assert_eq!(shared.spans().len(), QUEUE);
    assert_eq!(metrics.otel_spans_dropped_total.get(), 5);
    assert_eq!(shared.spans()[QUEUE - 1].name, format!("s{}", QUEUE - 1));
}

#[test]
fn dropping_the_queue_closes_it_and_wakes_the_exporter() {
    let (q, shared, _) = queue();
    q.on_end(span("one"));
    assert!(!woken(&shared));
    drop(q);
    assert!(shared.closed.load(Ordering::Acquire));
    assert!(
        woken(&shared),
        "the exporter must wake to send what is left"
    );
    assert_eq!(shared.take_batch().len(), 1);
}

#[test]
fn a_span_ending_after_the_close_is_counted_as_dropped() {
    let (q, shared, metrics) = queue();
    q.on_end(span("before"));
    shared.close();
    q.on_end(span("after"));
    assert_eq!(metrics.otel_spans_dropped_total.get(), 1);
    let left: Vec<_> = shared.take_batch().into_iter().map(|s| s.name).collect();
    assert_eq!(left, ["before"]);
}
