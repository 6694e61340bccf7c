//! `[admin]` and `[audit]`.

use std::path::Path;

use super::validate::{resolve, Collector};
use super::{defaults, raw, Admin, Audit};
use crate::audit::AuditSink;

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
    let tls = a
        .tls
        .and_then(|t| super::spiffe::server_cert(c, base, "admin.tls", t));
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
    let rotation = match (a.max_size.as_ref(), a.max_files) {
        (None, None) => None,
        (None, Some(_)) => {
            c.push("audit.max_files", "only meaningful with audit.max_size");
            None
        }
        (Some(size), files) => {
            if sink == AuditSink::Stdout {
                c.push(
                    "audit.max_size",
                    "rotation needs a file sink (audit.sink = \"PATH\")",
                );
            }
            let max_size = c.size("audit.max_size", Some(size), 0);
            let max_files = match files {
                None => crate::audit::DEFAULT_MAX_FILES,
                Some(0) => {
                    c.push(
                        "audit.max_files",
                        "must be greater than zero (rotated files kept)",
                    );
                    crate::audit::DEFAULT_MAX_FILES
                }
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            };
            Some(crate::audit::Rotation {
                max_size,
                max_files,
            })
        }
    };
    Audit {
        sink,
        queue,
        rotation,
    }
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
