//! The caller's client certificate as a front proxy forwards it: Envoy's
//! `X-Forwarded-Client-Cert` (`Cert=`/`Chain=`, URL-encoded PEM) or a header holding a
//! URL-encoded PEM chain (nginx `$ssl_client_escaped_cert`, Traefik's and Caddy's placeholders).
//! Only a certificate counts: XFCC's `URI=`/`DNS=`/`Subject=` are claims anyone can write, so an
//! element that carries them without the certificate is refused, never read.

use http::header::{HeaderMap, HeaderName};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

use crate::problem::{Code, Refusal};

/// Envoy's header name; any other configured header holds a bare URL-encoded PEM chain.
pub static XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// The chain (leaf first) forwarded in `name`, `None` when the caller presented none (header
/// absent or empty: nginx sends an empty value then). Malformed: 401, as a handshake with a
/// certificate that cannot be parsed would fail.
pub(super) fn forwarded_chain(
    name: &HeaderName,
    headers: &HeaderMap,
) -> Result<Option<Vec<CertificateDer<'static>>>, Refusal> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(refuse(
            "the forwarded client certificate header appears twice",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| refuse("the forwarded client certificate header is not ASCII"))?
        .trim();
    if value.is_empty() {
        return Ok(None);
    }
    let pem = if *name == XFCC {
        xfcc_pem(value)?
    } else {
        value.to_owned()
    };
    let pem = percent_decode(&pem)
        .ok_or_else(|| refuse("the forwarded client certificate is not URL-encoded PEM"))?;
    let mut chain = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        chain.push(cert.map_err(|_| refuse("the forwarded client certificate is not valid PEM"))?);
    }
    if chain.is_empty() {
        return Err(refuse(
            "the forwarded client certificate header holds no certificate",
        ));
    }
    Ok(Some(chain))
}

fn refuse(detail: &'static str) -> Refusal {
    Refusal::new(Code::InvalidCredential, detail)
}

/// The URL-encoded PEM of an XFCC value: `Chain=` (leaf and intermediates) when present, else
/// `Cert=` (the leaf). Exactly one element: with several, the earlier ones came from hops (or
/// the caller) before the trusted proxy, and a proxy that appends (`APPEND_FORWARD`) without a
/// client certificate of its own would leave only the caller's forgery. Configure the proxy to
/// `SANITIZE_SET`.
pub(super) fn xfcc_pem(value: &str) -> Result<String, Refusal> {
    let elements = split_unquoted(value, ',');
    let [element] = elements.as_slice() else {
        return Err(refuse(
            "X-Forwarded-Client-Cert must hold exactly one element (set forward_client_cert_details: SANITIZE_SET)",
        ));
    };
    let (mut cert, mut chain) = (None, None);
    for pair in split_unquoted(element, ';') {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(refuse("X-Forwarded-Client-Cert is malformed"));
        };
        let v = unquote(v.trim());
        match k.trim().to_ascii_lowercase().as_str() {
            "cert" => cert = Some(v),
            "chain" => chain = Some(v),
            _ => {}
        }
    }
    match chain.or(cert) {
        Some(pem) if !pem.is_empty() => Ok(pem),
        _ => Err(refuse(
            "X-Forwarded-Client-Cert carries no certificate (a URI= alone proves nothing; set the proxy to forward Cert or Chain)",
        )),
    }
}

/// Split on `sep` outside double quotes (XFCC quotes values holding `,`, `;` or `=`).
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(s.get(start..i).unwrap_or_default());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(s.get(start..).unwrap_or_default());
    out
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\""),
        None => v.to_owned(),
    }
}

/// RFC 3986 percent-decoding (`+` stays `+`: it is base64 here, not a space).
pub(super) fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hi = (it.next()? as char).to_digit(16)?;
            let lo = (it.next()? as char).to_digit(16)?;
            out.push(u8::try_from(hi << 4 | lo).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}
