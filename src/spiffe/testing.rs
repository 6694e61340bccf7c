//! Test fixtures: SPIFFE CAs and SVIDs made with rcgen, JWT-SVIDs signed with jsonwebtoken
//! (aws-lc-rs), and trust stores holding them.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};

use super::bundle::{JwtBundle, X509Bundle};
use super::store::TrustStore;
use crate::identity::TrustDomain;

/// Midnight UTC on a date.
pub(crate) fn at(y: i32, m: u8, d: u8) -> SystemTime {
    let secs = rcgen::date_time_ymd(y, m, d).unix_timestamp();
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap())
}

/// Seconds since the epoch.
pub(crate) fn unix(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// A CA for one trust domain (root, or intermediate when `above` is not empty).
pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub td: String,
    /// Intermediates between this CA and the root (this CA's own cert first), sent by leaves.
    above: Vec<CertificateDer<'static>>,
}

fn ca_params(td: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, format!("{td} CA"));
    p.subject_alt_names = vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

impl TestCa {
    /// A self-signed root for `td`, valid 1975–4096.
    pub fn new(td: &str) -> Self {
        let issuer = CertifiedIssuer::self_signed(ca_params(td), KeyPair::generate().unwrap());
        TestCa {
            issuer: issuer.unwrap(),
            td: td.to_owned(),
            above: Vec::new(),
        }
    }

    /// An intermediate CA for `td` signed by this one.
    pub fn intermediate(&self, td: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let issuer = CertifiedIssuer::signed_by(ca_params(td), key, &self.issuer).unwrap();
        let mut above = vec![issuer.der().clone()];
        above.extend(self.above.iter().cloned());
        TestCa {
            issuer,
            td: td.to_owned(),
            above,
        }
    }

    /// This CA's certificate.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// This CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// An X.509 bundle holding just this CA.
    pub fn bundle(&self) -> X509Bundle {
        X509Bundle::from_der(vec![self.der()]).unwrap()
    }

    /// An SVID chain for `uri` (valid 2030-01-01 to 2031-01-01), leaf first.
    pub fn leaf(&self, uri: &str) -> Vec<CertificateDer<'static>> {
        self.leaf_with(uri, |_| {})
    }

    /// Like [`TestCa::leaf`], with the parameters adjusted first.
    pub fn leaf_with(
        &self,
        uri: &str,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Vec<CertificateDer<'static>> {
        self.leaf_and_key(uri, adjust).0
    }

    /// The chain and its private key (for TLS clients).
    pub fn leaf_and_key(
        &self,
        uri: &str,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "svid");
        p.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = rcgen::date_time_ymd(2030, 1, 1);
        p.not_after = rcgen::date_time_ymd(2031, 1, 1);
        adjust(&mut p);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.above.iter().cloned());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (chain, key)
    }
}

/// A store with each CA as its trust domain's X.509 authority and the given JWT bundles.
pub(crate) fn store_with(cas: &[&TestCa], jwt: &[(&str, &[&JwtSigner])]) -> TrustStore {
    let mut x509: HashMap<&str, Vec<CertificateDer<'static>>> = HashMap::new();
    for ca in cas {
        x509.entry(ca.td.as_str()).or_default().push(ca.der());
    }
    let mut jwts: HashMap<&str, &[&JwtSigner]> = jwt.iter().copied().collect();
    let mut s = TrustStore::empty();
    let mut tds: Vec<&str> = x509.keys().chain(jwts.keys()).copied().collect();
    tds.sort_unstable();
    tds.dedup();
    for td in tds {
        let x = x509.remove(td).map(|d| X509Bundle::from_der(d).unwrap());
        let j = jwts
            .remove(td)
            .map(|keys| JwtBundle::parse(&jwks(keys)).unwrap());
        s.insert(TrustDomain::parse(td).unwrap(), x, j);
    }
    s
}

/// A JWT signing key with its `kid`.
pub(crate) struct JwtSigner {
    pub kid: String,
    pub alg: Algorithm,
    pub key: EncodingKey,
}

impl JwtSigner {
    fn from_pem(kid: &str, alg: Algorithm, pem: &str) -> Self {
        let key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        };
        JwtSigner {
            kid: kid.to_owned(),
            alg,
            key: key.unwrap(),
        }
    }

    /// A fresh ES256 key.
    pub fn es256(kid: &str) -> Self {
        super::install_jwt_crypto();
        let kp = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Self::from_pem(kid, Algorithm::ES256, &kp.serialize_pem())
    }

    /// A fresh ES384 key.
    pub fn es384(kid: &str) -> Self {
        super::install_jwt_crypto();
        let kp = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        Self::from_pem(kid, Algorithm::ES384, &kp.serialize_pem())
    }

    /// A fresh RSA-2048 key (used with `alg`, RS* or PS*).
    pub fn rsa(kid: &str, alg: Algorithm) -> Self {
        super::install_jwt_crypto();
        let kp = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048);
        Self::from_pem(kid, alg, &kp.unwrap().serialize_pem())
    }

    /// A fresh Ed25519 key.
    pub fn ed25519(kid: &str) -> Self {
        super::install_jwt_crypto();
        let kp = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        Self::from_pem(kid, Algorithm::EdDSA, &kp.serialize_pem())
    }

    /// The public JWK, as a SPIFFE bundle `jwt-svid` entry.
    pub fn jwk(&self) -> Value {
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&self.key, self.alg).unwrap();
        let mut v = serde_json::to_value(jwk).unwrap();
        v["kid"] = json!(self.kid);
        v["use"] = json!("jwt-svid");
        v
    }

    /// The standard header: `alg`, `kid`, `typ: JWT`.
    pub fn header(&self) -> Header {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        h.typ = Some("JWT".into());
        h
    }

    /// Sign `claims` with the standard header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(&self.header(), claims)
    }

    /// Sign `claims` with a custom header.
    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        // Low-S, as the validator requires (an ECDSA signer may emit either form).
        crate::low_s::normalize_jws(&jsonwebtoken::encode(header, claims, &self.key).unwrap())
    }
}

/// A SPIFFE bundle JSON holding the keys' public JWKs.
pub(crate) fn jwks(keys: &[&JwtSigner]) -> Vec<u8> {
    let keys: Vec<Value> = keys.iter().map(|k| k.jwk()).collect();
    serde_json::to_vec(&json!({ "spiffe_sequence": 1, "keys": keys })).unwrap()
}
