//! A throwaway slapd for tests and the benchmark: `tests/fixtures/ldap/slapd.conf.in` in a temp
//! dir, on free loopback ports (plain `ldap://` with StartTLS, and `ldaps://`, both with a fresh
//! test CA), entries loaded with `ldapadd` (slapadd would bypass the memberof overlay), `loglevel
//! stats` captured to a file so tests can count what the directory actually saw.
//!
//! Fails loudly, never skips: without slapd the LDAP tests cannot show anything.
//! Also compiled into `benches/ldap.rs` (by `#[path]`), so it only uses std, rcgen and tempfile.

#![allow(
    dead_code,
    reason = "tests/gateway and benches/ldap.rs include this file by path and use only part of it"
)]

use std::collections::HashMap;
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[path = "../../../../tests/support/child.rs"]
#[allow(
    clippy::duplicate_mod,
    reason = "the lib's tests include both slapd.rs and redis_server.rs, each with this helper"
)]
mod child;
use child::{free_port, ChildProcess};

const SLAPD: &str = "/usr/sbin/slapd";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ldap");

/// The root DN and password of both trees' databases.
pub const RACF_ADMIN: &str = "cn=admin,cn=RACF";
pub const EXAMPLE_ADMIN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PW: &str = "admin-secret";

pub struct Slapd {
    dir: tempfile::TempDir,
    pub port: u16,
    pub tls_port: u16,
    child: Option<ChildProcess>,
}

impl Slapd {
    /// Start slapd and load both trees.
    pub fn start() -> Slapd {
        assert!(
            Path::new(SLAPD).exists(),
            "{SLAPD} not found: the LDAP tests need a real slapd \
             (apt-get install -y slapd ldap-utils; scripts/test installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("racf")).unwrap();
        fs::create_dir(d.join("example")).unwrap();
        write_tls(d);
        let conf = fs::read_to_string(Path::new(FIXTURES).join("slapd.conf.in"))
            .unwrap()
            .replace("@DIR@", d.to_str().unwrap())
            .replace("@FIXTURES@", FIXTURES);
        fs::write(d.join("slapd.conf"), conf).unwrap();
        let mut s = Slapd {
            dir,
            port: free_port(),
            tls_port: free_port(),
            child: None,
        };
        // The free ports may be taken by someone else before slapd binds them: try fresh ones.
        let mut tries = 0;
        while let Err(log) = s.try_run() {
            tries += 1;
            assert!(tries < 3, "slapd did not start:\n{log}");
            s.port = free_port();
            s.tls_port = free_port();
        }
        s.ldapadd(RACF_ADMIN, "racf.ldif");
        s.ldapadd(EXAMPLE_ADMIN, "example.ldif");
        s
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The test CA (PEM file) that signed slapd's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn run(&mut self) {
        if let Err(log) = self.try_run() {
            panic!("slapd did not start:\n{log}");
        }
    }

    /// Start slapd and wait until both ports accept; the log on failure.
    fn try_run(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        let (port, tls_port) = (self.port, self.tls_port);
        let urls = format!("ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/");
        let child = ChildProcess::spawn(
            "slapd",
            Command::new(SLAPD)
                .arg("-f")
                .arg(d.join("slapd.conf"))
                .arg("-h")
                .arg(&urls)
                .arg("-d")
                .arg("stats"),
            &d.join("slapd.log"),
            Duration::from_secs(10),
            "",
            || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
            },
        )?;
        self.child = Some(child);
        Ok(())
    }

    fn ldapadd(&self, admin: &str, ldif: &str) {
        let out = Command::new("ldapadd")
            .args(["-x", "-H", &self.url(), "-D", admin, "-w", ADMIN_PW, "-f"])
            .arg(Path::new(FIXTURES).join(ldif))
            .output()
            .unwrap_or_else(|e| panic!("cannot run ldapadd (apt-get install ldap-utils): {e}"));
        assert!(
            out.status.success(),
            "ldapadd {ldif} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Kill slapd (the data stays on disk).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.stop();
        }
    }

    /// Start it again on the same ports.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Everything slapd logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Bind results per bind DN (lower-cased) as `(successes, failures with err=49)`, from the
    /// `stats` log: `conn=C op=O BIND dn="…"` then `conn=C op=O RESULT tag=97 err=N`.
    pub fn bind_results(&self) -> HashMap<String, (usize, usize)> {
        let log = self.log();
        let mut pending: HashMap<String, String> = HashMap::new();
        let mut out: HashMap<String, (usize, usize)> = HashMap::new();
        for line in log.lines() {
            let Some(at) = line.find("conn=") else {
                continue;
            };
            let rest = &line[at..];
            let mut it = rest.splitn(3, ' ');
            let (Some(conn), Some(op), Some(tail)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let key = format!("{conn} {op}");
            if let Some(dn) = tail.strip_prefix("BIND dn=\"") {
                let dn = dn.split('"').next().unwrap_or("").to_lowercase();
                pending.insert(key, dn);
            } else if tail.starts_with("RESULT tag=97 ") {
                if let Some(dn) = pending.remove(&key) {
                    let e = out.entry(dn).or_default();
                    if tail.contains(" err=0 ") {
                        e.0 += 1;
                    } else if tail.contains(" err=49 ") {
                        e.1 += 1;
                    }
                }
            }
        }
        out
    }

    /// Failed binds (err=49) slapd saw for `dn`.
    pub fn failed_binds(&self, dn: &str) -> usize {
        self.bind_results()
            .get(&dn.to_lowercase())
            .map_or(0, |r| r.1)
    }

    /// Successful binds slapd saw for `dn`.
    pub fn good_binds(&self, dn: &str) -> usize {
        self.bind_results()
            .get(&dn.to_lowercase())
            .map_or(0, |r| r.0)
    }

    /// Operations slapd answered (RESULT and SEARCH RESULT lines).
    pub fn results(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains(" RESULT ") && l.contains("conn="))
            .count()
    }
}

/// A fresh CA, and a certificate for 127.0.0.1 and localhost signed by it, as PEM files in `d`.
fn write_tls(d: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "slapd fixture CA");
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    fs::write(d.join("ca.pem"), issuer.pem()).unwrap();
    fs::write(d.join("server.pem"), cert.pem()).unwrap();
    fs::write(d.join("server.key"), key.serialize_pem()).unwrap();
}
