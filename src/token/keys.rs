//! One signing key: parsed once from PKCS#8 PEM (P-256 for ES256, Ed25519 for EdDSA, detected
//! from the key itself), with its RFC 7638 thumbprint as `kid`, its public JWK, and the JWS
//! headers it signs under, pre-encoded. Also `portcullis keys generate`: a fresh key written to a
//! new file with mode 0600.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, Signature, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

pub use super::keygen::{generate, write_private};

/// A signing algorithm the issuer supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256; signatures in the fixed 64-byte `r || s` form (RFC 7518 §3.4).
    Es256,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

impl Alg {
    /// The JOSE name: `ES256` or `EdDSA`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Alg {
    type Err = KeyError;

    /// `es256` or `eddsa` (as typed on the command line), case-insensitive.
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s.to_ascii_lowercase().as_str() {
            "es256" => Ok(Alg::Es256),
            "eddsa" | "ed25519" => Ok(Alg::EdDsa),
            _ => Err(KeyError::UnknownAlg(s.to_owned())),
        }
    }
}

/// Why a key could not be loaded, generated, written or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: already exists; refusing to overwrite a key")]
    Exists(String),
    #[error("{0}: not a PKCS#8 key (\"BEGIN PRIVATE KEY\"); convert it with `openssl pkcs8 -topk8 -nocrypt`")]
    NotPkcs8(String),
    #[error("{0}: no private key found")]
    NoKey(String),
    #[error("{0}: unsupported key: only P-256 (ES256) and Ed25519 (EdDSA) keys can sign tokens")]
    Unsupported(String),
    #[error("unknown algorithm {0:?}: expected es256 or eddsa")]
    UnknownAlg(String),
    #[error("{first} and {second} hold the same key (kid {kid})")]
    Duplicate {
        first: String,
        second: String,
        kid: String,
    },
    #[error("{path}: the signing key (first in [issuer] keys) is {alg}, but routes use the jwt-svid token profile, which needs ES256")]
    SignerNotEs256 { path: String, alg: Alg },
    #[error("no signing keys")]
    Empty,
    #[error("key generation failed")]
    Generate,
    #[error("signing failed")]
    Sign,
}

/// The public half of a key as a JWK (RFC 7517), as published in the JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicJwk {
    /// `EC` or `OKP`.
    pub kty: &'static str,
    /// `P-256` or `Ed25519`.
    pub crv: &'static str,
    /// base64url of the x coordinate (EC) or the public key (OKP).
    pub x: String,
    /// base64url of the y coordinate (EC only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RFC 7638 thumbprint.
    pub kid: Arc<str>,
    /// `ES256` or `EdDSA`.
    pub alg: &'static str,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: &'static str,
}

enum Signer {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// `typ` of a minted token's protected header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Typ {
    /// `JWT` (JWT-SVID).
    Jwt,
    /// `at+jwt` (RFC 9068).
    AtJwt,
}

/// A parsed private key, ready to sign. `Debug` shows only the algorithm and `kid`.
pub struct SigningKey {
    alg: Alg,
    jwk: PublicJwk,
    /// base64url of `{"alg":…,"kid":…,"typ":"JWT"}` and of the same with `at+jwt`.
    header_jwt: Box<str>,
    header_at_jwt: Box<str>,
    signer: Signer,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

/// The RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order, no
/// whitespace, base64url without padding. The members are base64url strings, so no escaping.
fn thumbprint(kty: &str, crv: &str, x: &str, y: Option<&str>) -> String {
    let canonical = match y {
        Some(y) => format!(r#"{{"crv":"{crv}","kty":"{kty}","x":"{x}","y":"{y}"}}"#),
        None => format!(r#"{{"crv":"{crv}","kty":"{kty}","x":"{x}"}}"#),
    };
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn encode_header(alg: Alg, kid: &str, typ: Typ) -> Box<str> {
    let typ = match typ {
        Typ::Jwt => "JWT",
        Typ::AtJwt => "at+jwt",
    };
    // Fixed member order; kid is base64url, so nothing needs escaping.
    let json = format!(
        r#"{{"alg":"{}","kid":"{kid}","typ":"{typ}"}}"#,
        alg.as_str()
    );
    URL_SAFE_NO_PAD.encode(json).into_boxed_str()
}

impl SigningKey {
    fn from_signer(signer: Signer, label: &str) -> Result<Self, KeyError> {
        let (alg, kty, crv, x, y) = match &signer {
            Signer::Es256(kp) => {
                // Uncompressed SEC1 point: 0x04 || X (32) || Y (32).
                let point = kp.public_key().as_ref();
                let (Some(x), Some(y)) = (point.get(1..33), point.get(33..65)) else {
                    return Err(KeyError::Unsupported(label.to_owned()));
                };
                let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
                (Alg::Es256, "EC", "P-256", x, Some(y))
            }
            Signer::EdDsa(kp) => {
                let x = URL_SAFE_NO_PAD.encode(kp.public_key().as_ref());
                (Alg::EdDsa, "OKP", "Ed25519", x, None)
            }
        };
        let kid: Arc<str> = thumbprint(kty, crv, &x, y.as_deref()).into();
        Ok(SigningKey {
            alg,
            header_jwt: encode_header(alg, &kid, Typ::Jwt),
            header_at_jwt: encode_header(alg, &kid, Typ::AtJwt),
            jwk: PublicJwk {
                kty,
                crv,
                x,
                y,
                kid,
                alg: alg.as_str(),
                use_: "sig",
            },
            signer,
        })
    }

    /// Parse a PKCS#8 DER private key; the algorithm follows from the key. `label` names the
    /// source in errors.
    pub fn from_pkcs8_der(der: &[u8], label: &str) -> Result<Self, KeyError> {
        let signer = if let Ok(kp) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
        {
            Signer::Es256(kp)
        } else if let Ok(kp) = Ed25519KeyPair::from_pkcs8(der) {
            Signer::EdDsa(kp)
        } else {
            return Err(KeyError::Unsupported(label.to_owned()));
        };
        Self::from_signer(signer, label)
    }

    /// Parse the first private key of a PEM document (it must be PKCS#8).
    pub fn from_pem(pem: &[u8], label: &str) -> Result<Self, KeyError> {
        for item in PrivateKeyDer::pem_slice_iter(pem) {
            match item {
                Ok(PrivateKeyDer::Pkcs8(der)) => {
                    return Self::from_pkcs8_der(der.secret_pkcs8_der(), label)
                }
                Ok(PrivateKeyDer::Sec1(_) | PrivateKeyDer::Pkcs1(_)) => {
                    return Err(KeyError::NotPkcs8(label.to_owned()))
                }
                _ => {}
            }
        }
        Err(KeyError::NoKey(label.to_owned()))
    }

    /// Load a PKCS#8 PEM file. Warns when the file is readable by group or others.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let label = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: label.clone(),
            source,
        })?;
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt as _;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %label, "signing key file is readable by group or others; chmod 600 it");
            }
        }
        Self::from_pem(&pem, &label)
    }

    /// A fresh key that exists only in memory (dev and tests).
    pub fn generate(alg: Alg) -> Result<Self, KeyError> {
        let signer = match alg {
            Alg::Es256 => Signer::Es256(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| KeyError::Generate)?,
            ),
            Alg::EdDsa => {
                Signer::EdDsa(Ed25519KeyPair::generate().map_err(|_| KeyError::Generate)?)
            }
        };
        Self::from_signer(signer, "<generated>")
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The RFC 7638 thumbprint, used as `kid`.
    pub fn kid(&self) -> &Arc<str> {
        &self.jwk.kid
    }

    /// The public JWK with `kid`, `alg` and `use`.
    pub fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    /// The base64url protected header for a token of this `typ` signed by this key.
    pub fn encoded_header(&self, typ: Typ) -> &str {
        match typ {
            Typ::Jwt => &self.header_jwt,
            Typ::AtJwt => &self.header_at_jwt,
        }
    }

    /// Sign a JWS signing input. ES256 yields the 64-byte `r || s` form JWS requires, not DER,
    /// and always low-S, the one form strict verifiers accept (this gateway canonicalizes a presented
    /// high-S twin to it).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.signer {
            Signer::Es256(kp) => {
                let sig: Signature = kp
                    .sign(&SystemRandom::new(), message)
                    .map_err(|_| KeyError::Sign)?;
                let mut rs = sig.as_ref().to_vec();
                crate::low_s::normalize(&mut rs);
                Ok(rs)
            }
            Signer::EdDsa(kp) => kp
                .try_sign(message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
        }
    }
}

#[cfg(test)]
mod tests;
