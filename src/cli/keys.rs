//! `portcullis keys generate` and `portcullis token inspect`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config;
use crate::token::{inspect, jwks, keygen, keys::Alg};

/// `keys generate --alg es256|eddsa --out FILE`: a new PKCS#8 PEM key, mode 0600, never
/// overwriting an existing file.
pub fn generate(alg: &str, out: &Path) -> anyhow::Result<()> {
    let alg: Alg = alg.parse()?;
    let pem = keygen::generate(alg)?;
    keygen::write_private(out, &pem)?;
    let key = crate::token::keys::SigningKey::from_pem(pem.as_bytes(), &out.display().to_string())?;
    println!("wrote {} ({}, kid {})", out.display(), key.alg(), key.kid());
    Ok(())
}

/// Where `token inspect` gets the JWKS from.
#[derive(Debug)]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
    /// `{[issuer] url}/.well-known/jwks.json` from the config file.
    Config(PathBuf),
}

/// `token inspect TOKEN`: verify against the issuer's JWKS, print header and claims.
/// Exit 0 valid, 1 invalid or expired.
pub async fn inspect_token(
    token: &str,
    source: JwksSource,
    as_json: bool,
    cacert: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let jwks_bytes = match source {
        JwksSource::File(p) => {
            std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?
        }
        JwksSource::Url(u) => fetch(&u, cacert).await?,
        JwksSource::Config(cfg) => {
            let cfg = config::load(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
            let iss = cfg.issuer.ok_or_else(|| {
                anyhow::anyhow!("the config has no [issuer]; pass --jwks-url or --jwks-file")
            })?;
            fetch(&format!("{}{}", iss.url, jwks::JWKS_PATH), cacert).await?
        }
    };
    let inspection = inspect::inspect(token.trim(), &jwks_bytes, SystemTime::now())?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&inspection.to_json())?);
    } else {
        print!("{}", inspection.render());
    }
    Ok(if inspection.status() == "valid" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// GET a small document over http or https (the roots of `cacert`, else the system's), with a
/// timeout and a size cap.
async fn fetch(url: &str, cacert: Option<PathBuf>) -> anyhow::Result<Vec<u8>> {
    crate::server::install_crypto();
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("invalid URL {url:?}"))?;
    let mut tls = crate::cli::client::TlsFiles {
        cacert,
        ..Default::default()
    }
    .client_config()
    .map_err(|e| anyhow::anyhow!(e))?;
    // hyper-rustls sets ALPN from `enable_http1` and panics when the config already has some.
    tls.alpn_protocols.clear();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.get(uri))
        .await
        .with_context(|| format!("fetching {url}: timed out"))?
        .with_context(|| format!("fetching {url}"))?;
    if !resp.status().is_success() {
        anyhow::bail!("fetching {url}: HTTP {}", resp.status());
    }
    let body = http_body_util::Limited::new(resp.into_body(), 1024 * 1024)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading {url}: {e}"))?;
    Ok(body.to_bytes().to_vec())
}
