//! The native HTTP/1.1 core (`[listen] http1_engine = "native"`, `transport::h1`): what is
//! specific to it, over raw sockets. The rest of the e2e suite runs against it too when
//! `PORTCULLIS_TEST_HTTP1_ENGINE=native` is set (`scripts/test` does, for the HTTP modules).

/// The config `toml` with `[listen] http1_engine` set from `PORTCULLIS_TEST_HTTP1_ENGINE`, when
/// the variable is set and the config names no engine of its own.
pub fn engine_from_env(toml: &str) -> String {
    match std::env::var("PORTCULLIS_TEST_HTTP1_ENGINE") {
        Ok(engine) if !engine.is_empty() && !toml.contains("http1_engine") => toml.replacen(
            "[listen]\n",
            &format!("[listen]\nhttp1_engine = \"{engine}\"\n"),
            1,
        ),
        _ => toml.to_owned(),
    }
}
