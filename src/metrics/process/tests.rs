use super::*;

#[test]
fn comm_with_spaces_and_parens() {
    let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 12345 1000 200";
    let f = after_comm(stat).unwrap();
    assert_eq!(f[0], "S");
    assert_eq!(f[11], "250");
    assert_eq!(f[12], "50");
    assert_eq!(f[19], "12345");
}

#[test]
fn limits_and_status_fields() {
    let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
    assert_eq!(max_open_files(limits), Some(1024.0));
    assert_eq!(field_value("VmRSS:\t   1234 kB\n", "VmRSS:"), Some(1234.0));
    assert_eq!(
        field_value("cpu 1 2\nbtime 1700000000\n", "btime"),
        Some(1.7e9)
    );
}

#[cfg(target_os = "linux")]
#[test]
fn this_process_is_sampled() {
    let s = sample();
    assert!(s.cpu_seconds.is_some());
    assert!(s.resident_bytes.unwrap() > 0.0);
    assert!(s.open_fds.unwrap() >= 3.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = s.start_time_seconds.unwrap();
    assert!(start <= now + 1.0 && start > now - 86400.0 * 365.0);
}
