use super::*;

#[test]
fn each_worker_knows_its_index() {
    let w = Workers::start(3).unwrap();
    assert_eq!(w.len(), 3);
    let mut seen = Vec::new();
    for h in w.handles().iter().chain(w.handles()) {
        let (tx, rx) = std::sync::mpsc::channel();
        h.spawn(async move {
            tx.send(crate::conn::worker_index()).unwrap();
        });
        seen.push(rx.recv().unwrap());
    }
    assert_eq!(seen, vec![1, 2, 3, 1, 2, 3]);
    assert_eq!(crate::conn::worker_index(), 0);
    w.shutdown();
}
