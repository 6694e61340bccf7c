use super::*;

#[test]
fn urls() {
    assert_eq!(
        AdminClient::new("http://127.0.0.1:9090/").unwrap().url(),
        "http://127.0.0.1:9090"
    );
    assert_eq!(
        AdminClient::new("http://localhost").unwrap().url(),
        "http://localhost:80"
    );
    for bad in [
        "127.0.0.1:9090",
        "http://127.0.0.1:9090/admin",
        "http://u:p@127.0.0.1:9090",
        "ftp://x",
    ] {
        assert!(AdminClient::new(bad).is_err(), "{bad}");
    }
    assert_eq!(
        AdminClient::for_addr("0.0.0.0:9090".parse().unwrap()).url(),
        "http://127.0.0.1:9090"
    );
}

#[tokio::test]
async fn unreachable_names_the_url() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let c = AdminClient::for_addr(addr);
    let e = c.get("/admin/v1/migration").await.unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }));
    assert!(e.to_string().contains(&format!("http://{addr}")), "{e}");
}
