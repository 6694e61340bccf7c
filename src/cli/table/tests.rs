use serde_json::json;

use super::*;

#[test]
fn migration_status_table() {
    let v = json!({
        "plans": [
            {"name": "payments-cics", "phase": "bridge", "next_phase": "enforce", "next_date": "2027-03-01",
             "days_to_sunset": 71, "status": "ready",
             "owner": "team-payments", "docs": "https://wiki.corp.example/m/payments",
             "shared_credentials": [{"principal": "racf:BATCH01", "distinct_sources": 32, "sources_capped": true,
                 "sources": [{"ip": "10.0.0.2", "user_agent": "batch\u{1b}[2J/1.0", "requests": 40, "last_seen": "2026-12-20T01:00:00Z"},
                             {"ip": "10.0.0.3", "user_agent": "", "requests": 2, "last_seen": "2026-12-19T01:00:00Z"}]}],
             "graces": [{"principal": "racf:JSMITH", "until": "2027-04-01", "reason": "vendor", "days_left": 102,
                         "expired": false, "seen": false},
                        {"principal": "racf:OLD", "until": "2026-12-01", "reason": "was late", "days_left": -19,
                         "expired": true, "seen": true}],
             "window": {"legacy_share": 0.004975, "max_legacy_share": 0.01, "days": 14},
             "active_legacy_principals": [{"principal": "BATCH01"}, {"principal": "JSMITH"}],
             "what_if_enforced": {"refused_requests": 70, "principals": ["racf:BATCH01", "racf:JSMITH"]},
             "expiring_certs": [{"identity": "spiffe://corp.example/ns/payments/batch",
                                 "not_after": "2026-12-24T00:00:00Z", "days_left": 3}]},
            {"name": "stripe-callbacks", "phase": "bridge", "next_phase": null, "next_date": null,
             "days_to_sunset": null, "status": "overdue-review",
             "window": {"legacy_share": null, "max_legacy_share": 0.0, "days": 14},
             "active_legacy_principals": [], "what_if_enforced": {"refused_requests": 0, "principals": []}}
        ],
        "unplanned_routes": [{"route": "legacy-soap", "phase": "bridge"}]
    });
    let expected = "\
PLAN              PHASE   NEXT                SUNSET IN (DAYS)  LEGACY SHARE            ACTIVE LEGACY  STATUS
payments-cics     bridge  enforce 2027-03-01  71                0.50% (max 1.00%, 14d)  2              ready
stripe-callbacks  bridge  -                   -                 - (max 0.00%, 14d)      0              overdue review
payments-cics: enforcing today would refuse 70 request(s) from 2 caller(s): racf:BATCH01, racf:JSMITH
payments-cics: contact team-payments · https://wiki.corp.example/m/payments
payments-cics: split before enforce: racf:BATCH01 is used from at least 32 sources
  10.0.0.2  batch?[2J/1.0  40 request(s), last 2026-12-20T01:00:00Z
  10.0.0.3  (no User-Agent)  2 request(s), last 2026-12-19T01:00:00Z
payments-cics: grace for racf:JSMITH until 2027-04-01 (102 days left): vendor (not seen in the window: check the spelling)
payments-cics: grace for racf:OLD until 2026-12-01 (EXPIRED, refused): was late
payments-cics: client certificate of spiffe://corp.example/ns/payments/batch expires 2026-12-24T00:00:00Z (3 days)
route legacy-soap: no plan (bridge, standing exception)
";
    assert_eq!(migration_table(&v), expected);
}

#[test]
fn inventory_table_sanitizes_cells() {
    let v = json!({"entries": [
        {"kind": "ldap", "credential": "racf", "principal": "EVIL\u{1b}[2J", "identity": "spiffe://corp.example/legacy/racf/evil",
         "routes": ["cics", "cics-admin"], "first_seen": "2026-12-01T00:00:00Z", "last_seen": "2026-12-02T00:00:00Z",
         "count": 5, "revoked": true, "cert_expiring": false, "distinct_sources": 32, "sources_capped": true,
         "shared_suspected": true, "plans": [{"plan": "payments-cics", "owner": "team-payments\u{1b}[2J", "docs": null}]},
        {"kind": "mtls", "credential": "workload-mtls", "principal": null, "identity": "spiffe://corp.example/a",
         "routes": ["cics"], "first_seen": "2026-12-01T00:00:00Z", "last_seen": "2026-12-01T00:00:00Z",
         "count": 1, "revoked": false, "cert_expiring": true, "cert_not_after": "2026-12-05T00:00:00Z",
         "distinct_sources": 1, "sources_capped": false, "shared_suspected": false, "plans": []}
    ]});
    let t = inventory_table(&v);
    assert!(!t.contains('\u{1b}'));
    let expected = "\
KIND  CREDENTIAL     PRINCIPAL  IDENTITY                                ROUTES           FIRST SEEN            LAST SEEN             REQUESTS  SOURCES  OWNER                              NOTES
ldap  racf           EVIL?[2J   spiffe://corp.example/legacy/racf/evil  cics,cics-admin  2026-12-01T00:00:00Z  2026-12-02T00:00:00Z  5         >=32     team-payments?[2J (payments-cics)  revoked; shared? split before enforce
mtls  workload-mtls  -          spiffe://corp.example/a                 cics             2026-12-01T00:00:00Z  2026-12-01T00:00:00Z  1         1        -                                  cert expires 2026-12-05T00:00:00Z
";
    assert_eq!(t, expected);
}
