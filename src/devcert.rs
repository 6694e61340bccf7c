//! Development certificates (the demo, and tests): a throwaway CA and leaf certificates signed by
//! it. Never used by `serve`.
//!
//! They are made to pass strict verifiers (OpenSSL's `X509_V_FLAG_X509_STRICT`, which Python 3.13
//! turns on by default, and browsers' lifetime rules): every certificate carries a Subject Key
//! Identifier, every leaf an Authority Key Identifier naming its CA, basicConstraints on all of
//! them, and short lifetimes ([`CA_DAYS`], [`LEAF_DAYS`]). The demo makes new ones at each start,
//! so nothing needs renewing.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::time::Date;

/// How long a dev CA is valid, in days from today: short, yet past the 30 days within which
/// the gateway warns that a trust bundle's CA expires (the demo should start without warnings
/// about its own fresh CA).
pub const CA_DAYS: i64 = 35;
/// How long a dev leaf certificate is valid, in days from today: short, yet past the 7 days
/// within which the gateway warns that its listener certificate expires.
pub const LEAF_DAYS: i64 = 10;

/// A throwaway certificate authority.
pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Validity of the leaves it issues, in days before and after today.
    leaf: (i64, i64),
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevCa")
    }
}

/// A PEM certificate and its PEM (PKCS#8) key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// `params` made valid from yesterday 00:00 UTC (a client whose clock is somewhat behind still
/// accepts it) until 00:00 UTC `days` after today.
fn valid_for(
    params: &mut CertificateParams,
    (before, days): (i64, i64),
) -> Result<(), rcgen::Error> {
    let today = Date::of(std::time::SystemTime::now());
    let (from, until) = (ymd(today.plus(-before))?, ymd(today.plus(days))?);
    // `rcgen::date_time_ymd` panics on an impossible date: `ymd` only hands it real ones.
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    Ok(())
}

/// `d` as the parts `rcgen::date_time_ymd` takes, or `Error::Time` out of its range.
fn ymd(d: Date) -> Result<(i32, u8, u8), rcgen::Error> {
    let (y, m, day) = d.ymd();
    match (i32::try_from(y), u8::try_from(m), u8::try_from(day)) {
        (Ok(y), Ok(m), Ok(day)) if (1..=9999).contains(&y) => Ok((y, m, day)),
        _ => Err(rcgen::Error::Time),
    }
}

impl DevCa {
    /// A new CA named `name`, valid for [`CA_DAYS`].
    pub fn new(name: &str) -> Result<Self, rcgen::Error> {
        Self::lasting(name, (1, CA_DAYS), (1, LEAF_DAYS))
    }

    /// A CA valid `ca.0` days before today to `ca.1` days after, whose leaves are valid
    /// `leaf.0` days before to `leaf.1` after: for tests that move a fake clock far from today.
    pub fn lasting(name: &str, ca: (i64, i64), leaf: (i64, i64)) -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        // pathLen 0: it signs leaves only.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        valid_for(&mut params, ca)?;
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(DevCa { issuer, leaf })
    }

    /// The CA certificate (PEM), for clients' trust stores.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for DNS names and IP addresses, valid for the CA's leaf lifetime ([`LEAF_DAYS`] by default).
    pub fn server(&self, names: &[&str]) -> Result<Issued, rcgen::Error> {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        valid_for(&mut params, self.leaf)?;
        self.sign(params)
    }

    /// An X.509-SVID (client certificate) for a SPIFFE ID, valid for the CA's leaf lifetime ([`LEAF_DAYS`] by default): the ID as
    /// the only URI SAN, digitalSignature, clientAuth, not a CA.
    pub fn svid(&self, spiffe_id: &str) -> Result<Issued, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, "svid");
        params.subject_alt_names = vec![rcgen::SanType::URI(spiffe_id.try_into()?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        valid_for(&mut params, self.leaf)?;
        self.sign(params)
    }

    /// Sign a leaf with a fresh key. Whatever `params` says, the result is a leaf
    /// (basicConstraints CA:FALSE, which also makes rcgen write its Subject Key Identifier) with
    /// an Authority Key Identifier naming this CA; the validity is the caller's.
    pub fn sign(&self, mut params: CertificateParams) -> Result<Issued, rcgen::Error> {
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests;
