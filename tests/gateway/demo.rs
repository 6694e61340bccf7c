//! `portcullis demo`: every command line it prints works as printed and gives the status its
//! comment promises (an HTTP status, or a command's exit code); the story those lines tell is
//! really there (sunset headers, the minted token at the upstream, the token inspectable, the
//! dashboard showing the demo's traffic, the revocation biting); its dev certificates pass
//! strict verification.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::bin;

/// What a printed command promises.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Http(u16),
    Exit(i32),
}

#[derive(Debug)]
struct Printed {
    /// Every line up to the audit log.
    banner: Vec<String>,
    /// The command lines, in order, each with the expectation of the comment above it.
    commands: Vec<(String, Expect)>,
}

/// The expectation in a comment line: `(expect 200…` or `(expect exit 0)`.
fn expectation(comment: &str) -> Option<Expect> {
    let i = comment.find("(expect ")?;
    let rest = &comment[i + 8..];
    if let Some(code) = rest.strip_prefix("exit ") {
        return Some(Expect::Exit(code[..code.find(')')?].parse().ok()?));
    }
    Some(Expect::Http(rest.get(..3)?.parse().ok()?))
}

/// Read the banner off the demo's stdout: every non-comment line after the first `== ` section
/// header is a command, and must follow exactly one expectation.
fn read_banner(lines: &mpsc::Receiver<String>) -> Printed {
    let mut banner = Vec::new();
    let mut commands = Vec::new();
    let mut pending = None;
    let mut in_sections = false;
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the demo prints its banner");
        banner.push(line.clone());
        let t = line.trim();
        if t.starts_with("The audit log follows") {
            break;
        }
        if t.starts_with("== ") {
            in_sections = true;
            assert!(pending.is_none(), "an expectation without its command");
            continue;
        }
        if !in_sections || t.is_empty() {
            continue;
        }
        if t.starts_with('#') {
            if let Some(e) = expectation(t) {
                assert!(pending.replace(e).is_none(), "two expectations: {t}");
            }
            continue;
        }
        let e = pending
            .take()
            .unwrap_or_else(|| panic!("command without an (expect …) comment: {t}"));
        commands.push((t.to_string(), e));
    }
    assert!(pending.is_none(), "an expectation without its command");
    Printed { banner, commands }
}

/// Run one printed line with `sh` as a user would paste it: for an HTTP line, its output and the
/// status curl reports; for a command, its output and exit code.
fn run(cmd: &str, expect: Expect) -> (String, Expect) {
    let line = match expect {
        Expect::Http(_) => format!("{cmd} -w '\\n%{{http_code}}'"),
        Expect::Exit(_) => cmd.to_string(),
    };
    let out = Command::new("sh").arg("-c").arg(&line).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    match expect {
        Expect::Http(_) => {
            assert!(
                out.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
            (body.to_string(), Expect::Http(code.parse().unwrap_or(0)))
        }
        Expect::Exit(_) => {
            let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
            (all, Expect::Exit(out.status.code().unwrap_or(-1)))
        }
    }
}

/// The demo's stdout, line by line, on a channel (a reader thread: the audit log never ends).
fn lines_of(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The value after `label` on the banner's line that starts with it (`gateway`, `config`, …).
fn field(p: &Printed, label: &str) -> String {
    p.banner
        .iter()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {label} line"))
        .to_string()
}

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_printed_line_works_as_printed_and_tells_the_story() {
    // The demo's files live under TMPDIR: one whose name a shell would split or end a quote at
    // proves the printed lines quote every path.
    let tmp = tempfile::tempdir().unwrap();
    let tmpdir = tmp.path().join("my demo's files");
    std::fs::create_dir(&tmpdir).unwrap();
    let mut child = Demo(
        Command::new(bin())
            .args(["demo", "--port", "0", "--admin-port", "0"])
            .env("TMPDIR", &tmpdir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let lines = lines_of(child.0.stdout.take().unwrap());
    let p = read_banner(&lines);
    assert!(p.commands.len() >= 20, "{:#?}", p.commands);
    let base = field(&p, "gateway");
    let admin = field(&p, "admin");
    let ca = p
        .banner
        .iter()
        .find_map(|l| {
            l.split_once("dev CA at ")?
                .1
                .split_once(',')
                .map(|(c, _)| c.to_string())
        })
        .expect("the banner names the dev CA");
    // The banner shows the path as a shell word (quoted when it needs to be): ask sh for it.
    let ca = Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s {ca}"))
        .output()
        .unwrap();
    let ca = String::from_utf8(ca.stdout).unwrap();
    assert!(base.starts_with("https://127.0.0.1:") && !base.ends_with(":0"));

    let mut outputs = Vec::new();
    for (cmd, expect) in &p.commands {
        let (out, got) = run(cmd, *expect);
        assert_eq!(got, *expect, "{cmd}\n{out}");
        outputs.push((cmd.as_str(), out));
    }
    let output_of = |pred: &dyn Fn(&str) -> bool| -> &str {
        &outputs
            .iter()
            .find(|(c, _)| pred(c))
            .unwrap_or_else(|| panic!("no such printed command"))
            .1
    };

    // 1. The API key in bridge: sunset headers to the caller, the key stripped and a minted
    // token at the upstream, and that token verifies as printed with `token inspect`.
    let first = output_of(&|c| c.contains(" -i ") && c.contains("/partners/orders")).to_lowercase();
    assert!(first.contains("\ndeprecation: @"), "{first}");
    assert!(first.contains("\nsunset: "), "{first}");
    assert!(first.contains("rel=\"sunset\""), "{first}");
    assert!(first.contains("\"authorization\": \"bearer "), "{first}");
    assert!(
        !first.contains("x-api-key") && !first.contains("pcs_"),
        "{first}"
    );
    let inspected = output_of(&|c| c.contains(" token inspect "));
    assert!(inspected.contains("status:    valid"), "{inspected}");
    assert!(
        inspected.contains(r#""sub": "spiffe://demo.example/partner/acme""#),
        "{inspected}"
    );
    assert!(
        inspected.contains(&format!(r#""iss": "{base}""#)),
        "iss carries the bound port: {inspected}"
    );
    assert!(
        inspected.contains(r#""aud": "partners-api""#),
        "{inspected}"
    );

    // 2. The webhook: the upstream gets a minted token.
    let hook = output_of(&|c| c.contains("/hooks/github") && c.contains("demo-1")).to_lowercase();
    assert!(hook.contains("\"authorization\": \"bearer "), "{hook}");

    // 5. The ops side shows the demo's own traffic.
    let inventory = output_of(&|c| c.ends_with("/admin/v1/inventory"));
    assert!(inventory.contains("\"acme\""), "{inventory}");
    let status = output_of(&|c| c.contains(" migration status "));
    assert!(
        status.contains("partner-api") && status.contains("bridge"),
        "{status}"
    );
    let revoked = output_of(&|c| c.contains(" revoke "));
    assert!(revoked.contains("partner-keys:acme"), "{revoked}");
    dashboard_shows_the_demo(&admin);

    strict_clients_accept_the_dev_certificates(&base, &ca);

    // The audit log follows the banner: one JSON line per request to the gateway.
    let gateway_requests = p.commands.iter().filter(|(c, _)| c.contains(&base)).count();
    let mut audited = 0;
    while audited < gateway_requests {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{audited} of {gateway_requests} audit lines"));
        if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert!(v["request_id"].is_string());
            audited += 1;
        }
    }

    // Ctrl-C stops it cleanly, and it starts without a warning about its own setup.
    let _ = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status();
    let exit = child.0.wait().unwrap();
    assert!(exit.success(), "demo exits 0 on Ctrl-C: {exit:?}");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut log).unwrap();
    assert!(
        !log.contains(" WARN "),
        "the demo's own setup warns:\n{log}"
    );
}

/// The dashboard, rendered by a real browser, shows the plan in bridge and the demo's caller.
fn dashboard_shows_the_demo(admin: &str) {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            &format!("{admin}/"),
        ])
        .output()
        .unwrap_or_else(|e| panic!("chromium not runnable ({e}); scripts/test installs it"));
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains(r#"data-plan="partner-api""#), "{dom}");
    assert!(
        dom.contains(r#"<span class="phase bridge">bridge</span>"#),
        "{dom}"
    );
    assert!(dom.contains("<td>partner-keys</td><td>acme</td>"), "{dom}");
}

/// Python's `ssl` with `VERIFY_X509_STRICT` (the default from Python 3.13) completes a handshake
/// with the demo listener, checking the IP address; OpenSSL's `-x509_strict` accepts the demo's
/// X.509-SVID as a client certificate of its SPIFFE CA.
fn strict_clients_accept_the_dev_certificates(base: &str, ca: &str) {
    let port = base.rsplit(':').next().unwrap();
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
assert ctx.verify_flags & ssl.VERIFY_X509_STRICT and ctx.verify_mode == ssl.CERT_REQUIRED
with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10) as s:
    with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
        print("ok", t.version())
"#;
    let out = Command::new("python3")
        .args(["-c", script, ca, port])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("ok"),
        "strict TLS verification failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = std::path::Path::new(ca).parent().unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile"])
        .arg(dir.join("spiffe-bundle.pem"))
        .arg(dir.join("svid.pem"))
        .output()
        .expect("openssl runs; scripts/test installs it");
    assert!(
        out.status.success(),
        "openssl -x509_strict: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Python's strict verification against a TLS server (Python's own) holding `chain`/`key`,
/// trusting `ca`; whether the handshake succeeds.
fn python_strict_handshake(ca: &str, chain: &str, key: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let (ca, chain, key) = (
        write("ca.pem", ca),
        write("chain.pem", chain),
        write("key.pem", key),
    );
    let script = r#"
import socket, ssl, sys, threading
server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server.load_cert_chain(sys.argv[2], sys.argv[3])
lsock = socket.create_server(("127.0.0.1", 0))
def serve():
    conn, _ = lsock.accept()
    try:
        with server.wrap_socket(conn, server_side=True) as t:
            t.recv(1)
    except (ssl.SSLError, OSError):
        pass
threading.Thread(target=serve, daemon=True).start()
client = ssl.create_default_context(cafile=sys.argv[1])
client.verify_flags |= ssl.VERIFY_X509_STRICT
try:
    with socket.create_connection(lsock.getsockname(), timeout=10) as s:
        with client.wrap_socket(s, server_hostname="localhost"):
            print("accepted")
except ssl.SSLCertVerificationError as e:
    print("rejected", e.verify_message)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args([&ca, &chain, &key])
        .output()
        .expect("python3 runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("accepted") || said.starts_with("rejected"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said.starts_with("accepted")
}

/// The check above has teeth: certificates made the way the demo made them before (rcgen's
/// defaults: no Authority Key Identifier, valid 1975–4096) are rejected by the same strict
/// client that accepts `devcert`'s.
#[test]
fn strict_verification_rejects_the_old_dev_certificates_and_accepts_the_new() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    assert!(!python_strict_handshake(
        &ca.pem(),
        &leaf.pem(),
        &key.serialize_pem()
    ));

    let ca = portcullis::devcert::DevCa::new("test CA").unwrap();
    let leaf = ca.server(&["localhost"]).unwrap();
    assert!(python_strict_handshake(
        &ca.cert_pem(),
        &leaf.cert_pem,
        &leaf.key_pem
    ));
}
