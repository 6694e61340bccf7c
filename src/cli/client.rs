//! The CLI's side of the admin API: plain HTTP/1.1 over TCP with hyper's client (the admin
//! listener binds loopback; a remote one is reached through a tunnel). One request per
//! connection, bounded in time and size.

use rustls_pki_types::pem::PemObject;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Give up on an admin request after this long.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Largest admin response read (a big inventory is a few MiB).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL given is not one this client can use.
    #[error("{0}")]
    BadUrl(String),
    /// Nothing answered at the address (or not in time).
    #[error("admin API at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// The API answered with an error status; `message` is its `detail` or `error`.
    #[error("admin API at {url} answered {status}: {message}")]
    Status {
        url: String,
        status: StatusCode,
        message: String,
    },
    /// The answer was not the JSON expected.
    #[error("admin API at {url} sent an unreadable response: {reason}")]
    Unreadable { url: String, reason: String },
}

/// An admin API endpoint: `http://HOST:PORT`.
#[derive(Debug, Clone)]
pub struct AdminClient {
    /// `host:port`, as dialled and sent in `Host`.
    authority: String,
    /// `https://`: the TLS client (CA, optional client certificate) and the server's name.
    tls: Option<(
        std::sync::Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
}

/// Files for an `https://` admin API (`[admin] allow`): the CA that issued the gateway's
/// certificate and the operator's X.509-SVID.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cacert: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

impl TlsFiles {
    /// The rustls client config: roots from `cacert` (else the system's), the client
    /// certificate when both `cert` and `key` are given.
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.cacert {
            Some(p) => {
                let pem = std::fs::read(p).map_err(|e| format!("--cacert {}: {e}", p.display()))?;
                for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                    let c = c.map_err(|e| format!("--cacert {}: {e}", p.display()))?;
                    roots
                        .add(c)
                        .map_err(|e| format!("--cacert {}: {e}", p.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("--cacert {}: no certificate", p.display()));
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
        }
        let b = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
        let mut cfg = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => {
                let read = |p: &std::path::Path| {
                    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
                };
                let chain = rustls_pki_types::CertificateDer::pem_slice_iter(&read(c)?)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("--cert {}: {e}", c.display()))?;
                let key = match rustls_pki_types::PrivateKeyDer::from_pem_slice(&read(k)?) {
                    Ok(key) => key,
                    Err(rustls_pki_types::pem::Error::NoItemsFound) => {
                        return Err(format!("--key {}: no private key", k.display()))
                    }
                    Err(e) => return Err(format!("--key {}: {e}", k.display())),
                };
                b.with_client_auth_cert(chain, key)
                    .map_err(|e| format!("--cert/--key: {e}"))?
            }
            (None, None) => b.with_no_client_auth(),
            _ => return Err("--cert and --key go together".into()),
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

impl AdminClient {
    /// Parse `--admin URL` (`http://127.0.0.1:9090`, a trailing `/` allowed).
    pub fn new(url: &str) -> Result<AdminClient, ClientError> {
        Self::with_tls(url, &TlsFiles::default())
    }

    /// `http://HOST:PORT`, or `https://HOST:PORT` with `tls` (an admin listener with
    /// `[admin] allow` wants the operator's client certificate).
    pub fn with_tls(url: &str, tls: &TlsFiles) -> Result<AdminClient, ClientError> {
        let bad = |why: &str| ClientError::BadUrl(format!("--admin {url:?}: {why}"));
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("expected http://HOST:PORT or https://HOST:PORT")),
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("expected http://HOST:PORT without a path"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user info is not supported"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|_| bad("not a usable TLS server name"))?;
            let cfg = tls.client_config().map_err(ClientError::BadUrl)?;
            Some((std::sync::Arc::new(cfg), name))
        } else {
            None
        };
        Ok(AdminClient {
            authority: format!("{}:{port}", authority.host()),
            tls,
        })
    }

    /// The client for the config's `[admin] addr` (an unspecified address means this host).
    pub fn for_addr(addr: std::net::SocketAddr) -> AdminClient {
        let ip = match addr.ip() {
            std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        AdminClient {
            authority: std::net::SocketAddr::new(ip, addr.port()).to_string(),
            tls: None,
        }
    }

    /// `http://host:port`, for messages.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }

    /// `GET path` → the JSON body of a 2xx answer.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request(Method::GET, path, None, false)
            .await
            .map(|(_, v)| v)
    }

    /// `method path` with a JSON body → status and JSON body of a 2xx answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<(StatusCode, Value), ClientError> {
        self.request(method, path, Some(body.to_string()), false)
            .await
    }

    /// Like [`AdminClient::send`], but an error answer with a JSON body (problem+json) is
    /// returned as such, for commands that print its members.
    pub async fn send_any(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<(StatusCode, Value), ClientError> {
        self.request(method, path, Some(body.to_string()), true)
            .await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        errors_as_json: bool,
    ) -> Result<(StatusCode, Value), ClientError> {
        let url = format!("{}{path}", self.url());
        let exchange = self.exchange(method, path, body, errors_as_json);
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Unreachable {
                url: self.url(),
                reason: format!("no answer within {}s", TIMEOUT.as_secs()),
            }),
        }
        .map_err(|e| match e {
            ClientError::Unreadable { reason, .. } => ClientError::Unreadable { url, reason },
            other => other,
        })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        errors_as_json: bool,
    ) -> Result<(StatusCode, Value), ClientError> {
        let unreachable = |e: &dyn std::fmt::Display| ClientError::Unreachable {
            url: self.url(),
            reason: e.to_string(),
        };
        let unreadable = |reason: String| ClientError::Unreadable {
            url: self.url(),
            reason,
        };
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, driver) = match &self.tls {
            None => {
                let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| unreachable(&e))?;
                (s, tokio::spawn(async move { conn.await.map(drop) }))
            }
            Some((cfg, name)) => {
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| unreachable(&e))?;
                let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(|e| unreachable(&e))?;
                (s, tokio::spawn(async move { conn.await.map(drop) }))
            }
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.authority)
            .header(ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::BadUrl(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| unreadable(e.to_string()))?
            .to_bytes();
        driver.abort();
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        if let (false, true, Some(v)) = (status.is_success(), errors_as_json, &value) {
            return Ok((status, v.clone()));
        }
        if !status.is_success() {
            let message = value
                .as_ref()
                .and_then(|v| v.get("detail").or_else(|| v.get("error")))
                .and_then(Value::as_str)
                .map_or_else(
                    || {
                        String::from_utf8_lossy(&bytes)
                            .trim()
                            .chars()
                            .take(200)
                            .collect()
                    },
                    str::to_owned,
                );
            return Err(ClientError::Status {
                url: self.url(),
                status,
                message: message.chars().filter(|c| !c.is_control()).collect(),
            });
        }
        let value = value.ok_or_else(|| unreadable("not JSON".into()))?;
        Ok((status, value))
    }
}

#[cfg(test)]
mod tests;
