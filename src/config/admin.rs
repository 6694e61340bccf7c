//! `[admin]` and `[audit]`.

use std::path::Path;

use super::validate::{resolve, Collector};
use super::{defaults, raw, Admin, Audit};
use crate::audit::AuditSink;
use crate::transport::settings::TlsFiles;

pub(super) fn admin(c: &mut Collector<'_>, base: &Path, a: raw::Admin) -> Option<Admin> {
    let s = a.addr.as_deref().unwrap_or(defaults::ADMIN_ADDR);
    let addr = c.addr("admin.addr", s)?;
    let allow = a.allow.unwrap_or_default();
    for (i, p) in allow.iter().enumerate() {
        if let Err(e) = crate::authz::policy::allow::check_pattern(p) {
            c.push(format!("admin.allow[{i}]"), e);
        }
    }
    if !addr.ip().is_loopback() {
        if allow.is_empty() {
            c.push(
                "admin.allow",
                format!("required when admin.addr ({addr}) is not loopback: the admin API (revocations, inventory) would be open to the network; list the operators' SPIFFE IDs, e.g. [\"spiffe://corp.example/ops/*\"]"),
            );
        } else {
            c.warn(format!(
                "admin.addr {addr} is not loopback: /healthz, /readyz and /metrics are served without a client certificate"
            ));
        }
    }
    let tls = a.tls.map(|t| TlsFiles {
        cert: c.file_path("admin.tls.cert", base, &t.cert),
        key: c.file_path("admin.tls.key", base, &t.key),
    });
    if tls.is_some() && allow.is_empty() {
        c.push(
            "admin.tls",
            "is the certificate of admin over mTLS: set admin.allow (the operators' SPIFFE IDs) too",
        );
    }
    Some(Admin { addr, allow, tls })
}

/// `[audit]`: the sink and the queue length.
pub(super) fn audit(c: &mut Collector<'_>, base: &Path, a: raw::Audit) -> Audit {
    let sink = match a.sink.as_deref() {
        None | Some("stdout") => AuditSink::Stdout,
        Some("") => {
            c.push("audit.sink", "empty (use \"stdout\" or a file path)");
            AuditSink::Stdout
        }
        Some(p) => AuditSink::File(resolve(base, p)),
    };
    let queue = match a.queue {
        None => defaults::AUDIT_QUEUE,
        Some(0) => {
            c.push("audit.queue", "must be greater than zero");
            defaults::AUDIT_QUEUE
        }
        Some(n) => usize::try_from(n).unwrap_or(defaults::AUDIT_QUEUE),
    };
    Audit { sink, queue }
}

#[cfg(test)]
mod admin_tests {
    use crate::config::creds::tests::problems;

    #[test]
    fn admin_tls_needs_allow_and_allow_needs_a_certificate() {
        let p = problems("allow = [\"spiffe://corp.example/ops/*\"]");
        assert!(
            p.iter()
                .any(|m| m.starts_with("admin.allow: admin over mTLS needs a certificate")),
            "{p:?}"
        );
        let p = problems("[admin.tls]\ncert = \"a.pem\"\nkey = \"a.key\"");
        assert!(
            p.iter()
                .any(|m| m.starts_with("admin.tls: is the certificate of admin over mTLS")),
            "{p:?}"
        );
        // With its own certificate, admin over mTLS no longer asks for [listen.tls].
        let p = problems(
            "allow = [\"spiffe://corp.example/ops/*\"]\n[admin.tls]\ncert = \"a.pem\"\nkey = \"a.key\"",
        );
        assert!(
            !p.iter().any(|m| m.contains("needs a certificate")),
            "{p:?}"
        );
    }
}
