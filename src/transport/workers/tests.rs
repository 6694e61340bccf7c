use super::*;

#[test]
fn connections_spread_round_robin_and_know_their_worker() {
    let w = Workers::start(3).unwrap();
    assert_eq!(w.len(), 3);
    let mut seen = Vec::new();
    for _ in 0..6 {
        let (tx, rx) = std::sync::mpsc::channel();
        w.next().spawn(async move {
            tx.send(crate::conn::worker_index()).unwrap();
        });
        seen.push(rx.recv().unwrap());
    }
    assert_eq!(seen, vec![1, 2, 3, 1, 2, 3]);
    assert_eq!(crate::conn::worker_index(), 0);
    w.shutdown();
}
