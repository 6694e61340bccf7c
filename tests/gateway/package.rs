//! Packaging: systemd's readiness protocol spoken to a datagram socket this test holds (playing
//! systemd), shell completions loaded by real bash, zsh and fish, and the man pages rendered by
//! man/groff.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::bin;

/// `portcullis serve` on ephemeral ports with `env`; its stderr lines arrive on the channel.
struct Served {
    child: Child,
    stderr: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start(env: &[(&str, &str)]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("portcullis.toml");
        std::fs::write(
            &cfg,
            "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
             [audit]\nsink = \"stdout\"\n",
        )
        .unwrap();
        let mut child = Command::new(bin())
            .args(["serve", "-c"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Served {
            child,
            stderr: rx,
            _dir: dir,
        }
    }

    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no log line with {needle:?}");
    }

    fn sigterm(&mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next datagram, as text.
fn recv(sock: &UnixDatagram, within: Duration) -> Option<String> {
    sock.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn systemd_gets_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let systemd = UnixDatagram::bind(&path).unwrap();
    let mut gw = Served::start(&[
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "200000"),
    ]);
    let ready = recv(&systemd, Duration::from_secs(20)).expect("READY=1");
    let mut lines = ready.lines();
    assert_eq!(lines.next(), Some("READY=1"), "{ready}");
    let status = lines.next().unwrap();
    assert!(
        status.starts_with("STATUS=serving on 127.0.0.1:"),
        "{ready}"
    );
    // Ready means serving: the data listener named in STATUS accepts at once.
    let addr = status
        .trim_start_matches("STATUS=serving on ")
        .split(',')
        .next()
        .unwrap();
    std::net::TcpStream::connect(addr).expect("the listener is up when READY=1 arrives");

    // WATCHDOG_USEC=200ms: a ping every ~100ms.
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(
            recv(&systemd, Duration::from_secs(2)).as_deref(),
            Some("WATCHDOG=1")
        );
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    let exit = gw.sigterm();
    assert!(exit.success(), "{exit:?}");
    let mut stopping = false;
    while let Some(msg) = recv(&systemd, Duration::from_millis(500)) {
        if msg.starts_with("STOPPING=1") {
            stopping = true;
        } else {
            assert_eq!(msg, "WATCHDOG=1");
        }
    }
    assert!(stopping, "STOPPING=1 before exiting");
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_pinged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let systemd = UnixDatagram::bind(&path).unwrap();
    let _gw = Served::start(&[
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "100000"),
        ("WATCHDOG_PID", "1"),
    ]);
    let ready = recv(&systemd, Duration::from_secs(20)).unwrap();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert_eq!(recv(&systemd, Duration::from_millis(600)), None);
}

#[test]
fn abstract_notify_socket() {
    use std::os::linux::net::SocketAddrExt as _;
    let name = format!("portcullis-notify-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let systemd = UnixDatagram::bind_addr(&addr).unwrap();
    let mut gw = Served::start(&[("NOTIFY_SOCKET", &format!("@{name}"))]);
    let ready = recv(&systemd, Duration::from_secs(20)).unwrap();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(gw.sigterm().success());
    assert!(recv(&systemd, Duration::from_secs(5))
        .unwrap()
        .starts_with("STOPPING=1"));
}

/// A supervisor may stop the gateway the instant READY=1 arrives: SIGTERM is already handled
/// then (a clean drain, exit 0, STOPPING=1), never the default action that kills the process.
/// CI once caught the race this guards against; a few rounds make it likely to show again.
#[test]
fn sigterm_the_instant_ready_arrives_is_a_clean_stop() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let mut gw = Served::start(&[("NOTIFY_SOCKET", path.to_str().unwrap())]);
        let ready = recv(&systemd, Duration::from_secs(20)).unwrap();
        assert!(ready.starts_with("READY=1\n"), "{ready}");
        let exit = gw.sigterm();
        assert!(exit.success(), "round {round}: {exit:?}");
        assert!(recv(&systemd, Duration::from_secs(5))
            .unwrap()
            .starts_with("STOPPING=1"));
    }
}

/// A NOTIFY_SOCKET nobody listens on, or that is not a socket name at all: the gateway serves
/// anyway and says why systemd was not told.
#[test]
fn a_broken_notify_socket_never_stops_the_gateway() {
    for (value, says) in [
        ("/nonexistent/notify", "notifying systemd"),
        ("relative/notify", "systemd is not notified"),
    ] {
        let mut gw = Served::start(&[("NOTIFY_SOCKET", value)]);
        let listening = gw.wait_log("portcullis listening");
        gw.wait_log(says);
        let admin = listening
            .split("admin_addr=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{admin}/healthz"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
        assert!(gw.sigterm().success());
    }
}

fn portcullis(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Run `shell` with `script`, the completion file as `$1`.
fn in_shell(shell: &str, args: &[&str], script: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("completions");
    std::fs::write(&file, portcullis(&["completions", shell])).unwrap();
    let out = Command::new(shell)
        .args(args)
        .arg(script)
        .arg(shell)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{shell} not runnable ({e}); scripts/test installs it"));
    assert!(
        out.status.success(),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_load_and_complete_in_bash_zsh_and_fish() {
    // bash: the completion function, asked as bash's `complete` would.
    let bash = in_shell(
        "bash",
        &["-c"],
        r#"source "$1"
complete -p portcullis
for line in "portcullis rev" "portcullis completions " "portcullis token inspect --ca"; do
  read -ra COMP_WORDS <<< "$line"; [[ $line == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMP_LINE=$line; COMP_POINT=${#line}
  _portcullis portcullis "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
  echo "${COMPREPLY[*]}"
done"#,
    );
    let lines: Vec<&str> = bash.lines().collect();
    assert!(
        lines[0].contains("_portcullis") && lines[0].ends_with("portcullis"),
        "{bash}"
    );
    assert_eq!(lines[1], "revoke", "{bash}");
    assert!(lines[2].ends_with(" bash zsh fish"), "{bash}");
    assert_eq!(lines[3], "--cacert", "{bash}");

    // zsh: registered with compinit for the command.
    let zsh = in_shell(
        "zsh",
        &["-f", "-c"],
        r#"autoload -U compinit && compinit -u -D && source "$1" && print -r -- $_comps[portcullis]"#,
    );
    assert_eq!(zsh.trim(), "_portcullis", "{zsh}");

    // fish: completes as it would at the prompt (clap_complete's fish script completes
    // subcommands and options, not positional values such as the shell name).
    let fish = in_shell(
        "fish",
        &["--no-config", "-c"],
        r#"source $argv[2]; complete -C "portcullis rev"; complete -C "portcullis token inspect --ca""#,
    );
    assert!(fish.lines().any(|l| l.starts_with("revoke\t")), "{fish}");
    assert!(fish.lines().any(|l| l.starts_with("--cacert\t")), "{fish}");

    // Only the three shells the docs name.
    let out = Command::new(bin())
        .args(["completions", "powershell"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_pages_render_without_warnings() {
    let page = portcullis(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH portcullis 1"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let said = portcullis(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(said.starts_with("wrote "), "{said}");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for want in [
        "portcullis.1",
        "portcullis-serve.1",
        "portcullis-demo.1",
        "portcullis-revoke.1",
        "portcullis-token-inspect.1",
        "portcullis-completions.1",
        "portcullis-man.1",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("portcullis.1")).unwrap(),
        page,
        "`man` prints the top page `--dir` writes"
    );
    for name in &names {
        // groff's own check: -z (no output), -ww (every warning), stderr must stay empty; -k
        // runs preconv on the UTF-8 help text ("…"), as man does.
        let out = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-z", "-ww"])
            .arg(dir.path().join(name))
            .output()
            .expect("groff runs; scripts/test installs it");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // What a reader sees: man formats the page, every command listed.
    let out = Command::new("man")
        .arg("-l")
        .arg(dir.path().join("portcullis.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man runs; scripts/test installs man-db");
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "portcullis-serve(1)",
        "portcullis-revoke(1)",
        "portcullis-completions(1)",
    ] {
        assert!(text.contains(cmd), "{cmd} in:\n{text}");
    }
}

/// The shipped unit asks for what `serve` does (Type=notify with a watchdog) and passes
/// `systemd-analyze verify`, with ExecStart pointing at this build's binary (verify checks that
/// the executables exist), and its sandboxing keeps the exposure score at "OK".
#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/systemd/portcullis.service"
    ))
    .unwrap();
    for line in ["Type=notify", "NotifyAccess=main", "WatchdogSec=30s"] {
        assert!(unit.lines().any(|l| l == line), "{line}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/portcullis", bin())).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs; scripts/test installs systemd");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/portcullis");
const HELM_STATIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gateway/helm_static.py");

fn helm_static(chart: &std::path::Path) -> (bool, String) {
    let out = Command::new("python3")
        .arg(HELM_STATIC)
        .arg(chart)
        .output()
        .expect("python3 runs (scripts/test's venv has PyYAML and jsonschema)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// No helm binary is installable here (none on PyPI, npm or Debian), so the chart is checked
/// statically: see tests/gateway/helm_static.py for what is and is not checked.
#[test]
fn helm_chart_static_checks() {
    let (ok, said) = helm_static(std::path::Path::new(CHART));
    assert!(ok && said.trim() == "ok", "{said}");

    // The checker has teeth: a template reading a value that does not exist, and a block left
    // open, are both reported.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("portcullis");
    let status = Command::new("cp")
        .args(["-r", CHART])
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let svc = copy.join("templates/service.yaml");
    let text = std::fs::read_to_string(&svc).unwrap();
    std::fs::write(
        &svc,
        text.replace(".Values.ports.admin", ".Values.ports.admn"),
    )
    .unwrap();
    let hpa = copy.join("templates/hpa.yaml");
    let text = std::fs::read_to_string(&hpa).unwrap();
    std::fs::write(&hpa, text.replacen("{{- end }}", "", 1)).unwrap();
    let (ok, said) = helm_static(&copy);
    assert!(!ok, "{said}");
    assert!(
        said.contains(".Values.ports.admn is not in values.yaml"),
        "{said}"
    );
    assert!(said.contains("hpa.yaml: 1 block(s) left open"), "{said}");
}

/// The chart's default `config` passes `portcullis check`, with the files it names (the
/// Secret and ConfigMap mounts) made under a temp dir in their place.
#[test]
fn helm_chart_default_config_passes_check() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['config'], end='')",
        ])
        .arg(format!("{CHART}/values.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = String::from_utf8(out.stdout).unwrap();
    assert!(
        config.contains("\"/run/secrets/portcullis-tls/tls.crt\""),
        "{config}"
    );

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    for d in [
        "/run/secrets/portcullis-tls",
        "/run/secrets/portcullis",
        "/run/portcullis/trust",
    ] {
        std::fs::create_dir_all(at(d)).unwrap();
    }
    let ca = portcullis::devcert::DevCa::new("chart test CA").unwrap();
    let leaf = ca.server(&["portcullis.corp.example"]).unwrap();
    std::fs::write(at("/run/secrets/portcullis-tls/tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(at("/run/secrets/portcullis-tls/tls.key"), &leaf.key_pem).unwrap();
    std::fs::write(at("/run/portcullis/trust/corp-bundle.pem"), ca.cert_pem()).unwrap();
    let key = at("/run/secrets/portcullis/issuer-current.pem");
    portcullis(&["keys", "generate", "--out", key.to_str().unwrap()]);
    let new_key = portcullis(&[
        "apikey",
        "new",
        "--id",
        "acme",
        "--identity",
        "spiffe://corp.example/partners/acme",
    ]);
    let entry: String = new_key.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(at("/run/secrets/portcullis/api-keys.toml"), entry).unwrap();

    let cfg = root.join("portcullis.toml");
    let moved = config.replace("\"/run/", &format!("\"{}/run/", root.display()));
    std::fs::write(&cfg, moved).unwrap();
    let out = Command::new(bin())
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// No Docker engine on the build machines, so the image is never built in the tests; what the
/// Dockerfile promises is checked as text: a distroless `cc` nonroot runtime holding a stripped
/// binary, no RUN in that stage (distroless has no shell), the nonroot uid the manifests and the
/// chart run as, and an exec-form entrypoint.
#[test]
fn dockerfile_promises() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/deploy/Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        lines.contains(&"ARG DISTROLESS=gcr.io/distroless/cc-debian12:nonroot"),
        "{text}"
    );
    assert!(lines.contains(&"FROM ${DISTROLESS} AS runtime"), "{text}");
    assert!(
        text.contains("CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked"),
        "the binary is stripped"
    );
    let runtime: Vec<&str> = lines
        .iter()
        .skip_while(|l| !l.starts_with("FROM ${DISTROLESS}"))
        .copied()
        .collect();
    assert!(
        !runtime.iter().any(|l| l.starts_with("RUN ")),
        "no shell in distroless: {runtime:?}"
    );
    assert!(runtime.contains(&"USER 65532:65532"), "{runtime:?}");
    assert!(runtime.contains(&r#"ENTRYPOINT ["/usr/local/bin/portcullis"]"#));
    // The builder's Debian release is the distroless base's (the binary links its glibc).
    assert!(lines.contains(&"ARG DEBIAN_RELEASE=bookworm"));

    // Manifests and chart run as that uid.
    let kustomize =
        std::fs::read_to_string(format!("{root}/deploy/kubernetes/deployment.yaml")).unwrap();
    let chart =
        std::fs::read_to_string(format!("{root}/deploy/helm/portcullis/values.yaml")).unwrap();
    for (name, manifest) in [("kubernetes", &kustomize), ("helm", &chart)] {
        for key in ["runAsUser: 65532", "runAsGroup: 65532", "fsGroup: 65532"] {
            assert!(manifest.contains(key), "{name}: {key}");
        }
        // distroless has no `sleep` to exec in a preStop hook.
        assert!(!manifest.contains(r#"["sleep""#), "{name}");
    }
}
