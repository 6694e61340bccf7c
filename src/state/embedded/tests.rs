use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::state::tests::racf;
use crate::state::StateStore;
use crate::time::Date;

/// The periodic flush takes the pending counts, then writes them on a blocking thread. A read
/// (every read flushes first) that came in between found nothing pending and read the database
/// before the write: the counts were in neither place, and the dashboard showed a plan with no
/// traffic (seen once in CI, under load). The database is held here so the first flush stays
/// between the two; a second flush must not return before the first has written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_returns_only_once_the_counts_an_earlier_flush_took_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        EmbeddedStore::open(&dir.path().join("state.db"))
            .await
            .unwrap(),
    );
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400);
    store.record(&racf(
        "JSMITH",
        "spiffe://corp.example/legacy/racf/jsmith",
        "cics",
        at,
    ));

    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let db = store.db.clone();
    let holder = std::thread::spawn(move || {
        let _held = db.lock().unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    locked_rx.recv().unwrap();

    let first = tokio::spawn({
        let s = store.clone();
        async move { s.do_flush().await }
    });
    // Until the first flush has taken the counts (and waits for the database).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let taken = store.pending.lock().unwrap().is_empty();
        if taken {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the flush never took the counts"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = tokio::spawn({
        let s = store.clone();
        async move { s.do_flush().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !second.is_finished(),
        "a flush returned while the counts an earlier one took were not written yet: a read \
         after it would miss them"
    );

    release_tx.send(()).unwrap();
    holder.join().unwrap();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let rows = store.usage(Date::of(at)).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].count, 1);
}
