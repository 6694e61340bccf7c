use std::time::Duration;

use super::*;

#[test]
fn notify_socket_forms() {
    assert_eq!(
        Target::parse("/run/systemd/notify"),
        Some(Target::Path("/run/systemd/notify".into()))
    );
    assert_eq!(
        Target::parse("@/org/freedesktop/systemd1/notify/1"),
        Some(Target::Abstract(
            b"/org/freedesktop/systemd1/notify/1".to_vec()
        ))
    );
    // Relative paths, an empty abstract name, empty: not something systemd hands out.
    for bad in ["run/notify", "@", "", "vsock:2:1234"] {
        assert_eq!(Target::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn watchdog_interval_rules() {
    let me = 4242;
    assert_eq!(
        watchdog_interval(Some("30000000"), None, me),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        watchdog_interval(Some("30000000"), Some("4242"), me),
        Some(Duration::from_secs(30))
    );
    // Meant for another process (inherited from a parent): ignored.
    assert_eq!(watchdog_interval(Some("30000000"), Some("1"), me), None);
    assert_eq!(watchdog_interval(Some("30000000"), Some("x"), me), None);
    for bad in [None, Some("0"), Some("-5"), Some("1e6"), Some("")] {
        assert_eq!(watchdog_interval(bad, None, me), None, "{bad:?}");
    }
}

#[test]
fn datagrams_reach_a_path_socket_and_an_abstract_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let systemd = UnixDatagram::bind(&path).unwrap();
    let n = Notifier::new(Target::Path(path)).unwrap();
    n.notify("READY=1\nSTATUS=x").unwrap();
    let mut buf = [0u8; 256];
    let len = systemd.recv(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"READY=1\nSTATUS=x");

    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("portcullis-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let systemd = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(Target::parse(&format!("@{name}")).unwrap()).unwrap();
        n.notify("WATCHDOG=1").unwrap();
        let len = systemd.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }
}

#[test]
fn nobody_listening_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let n = Notifier::new(Target::Path(dir.path().join("absent"))).unwrap();
    assert!(n.notify("READY=1").is_err());
    n.send("READY=1"); // logged, not raised
}

#[test]
fn status_stays_on_one_line() {
    assert_eq!(one_line("a\nREADY=1\r"), "a READY=1 ");
}
