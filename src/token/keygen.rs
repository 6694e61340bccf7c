//! `portcullis keys generate`: a fresh signing key as PKCS#8 PEM, written to a new file that only
//! its owner can read.

use std::io::Write as _;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::keys::{Alg, KeyError};

fn pem_private_key(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    pem.push_str("-----BEGIN PRIVATE KEY-----\n");
    for (i, c) in b64.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            pem.push('\n');
        }
        pem.push(c);
    }
    pem.push_str("\n-----END PRIVATE KEY-----\n");
    pem
}

/// `portcullis keys generate`: a new private key as PKCS#8 (v1, as `openssl genpkey` writes it)
/// PEM. Write it with [`write_private`].
pub fn generate(alg: Alg) -> Result<String, KeyError> {
    let doc = match alg {
        Alg::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        }
        Alg::EdDsa => Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()),
    }
    .map_err(|_| KeyError::Generate)?;
    Ok(pem_private_key(doc.as_ref()))
}

/// Write a private key to a new file readable only by its owner (mode 0600). An existing file is
/// never overwritten: rotating keys is done by adding files, not by replacing one in place.
pub fn write_private(path: &Path, pem: &str) -> Result<(), KeyError> {
    let label = || path.display().to_string();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists(label())
        } else {
            KeyError::Write {
                path: label(),
                source,
            }
        }
    })?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Write {
            path: label(),
            source,
        })
}

#[cfg(test)]
mod tests;
