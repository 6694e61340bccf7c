//! The aggregate against a plain model of what it must count (the per-counter nested maps it
//! replaced), over a long mixed stream: the same usage, inventory and source rows, whatever the
//! spelling of a source, the cap, the order of timestamps or a put-back.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::*;
use crate::identity::Kind;
use crate::state::sources::{Source, MAX_SOURCES};

type Group4 = (Date, String, String, String);
type Group5 = (Date, String, String, String, String);
/// The kept sources (count, last) in the order first seen, and the overflow.
type ModelCell = (Vec<(Source, u64, Timestamp)>, Option<(u64, Timestamp)>);

/// What the aggregate must hold: one map per counter, looked up the obvious way.
#[derive(Default)]
struct Model {
    usage: BTreeMap<Group4, (Kind, u64)>,
    inventory: BTreeMap<(String, String), InventoryEntry>,
    sources: BTreeMap<Group5, ModelCell>,
}

impl Model {
    fn record(&mut self, u: &Usage<'_>, source: Option<Source>) {
        let at = Timestamp::of(u.at);
        let plan = u.plan.unwrap_or("").to_owned();
        let key = u.principal.unwrap_or(u.identity).to_owned();
        let g = (at.date(), u.route.to_owned(), plan, u.credential.to_owned());
        let cell = self.usage.entry(g.clone()).or_insert((u.kind, 0));
        *cell = (u.kind, cell.1 + 1);
        if let Some(s) = source {
            let (kept, overflow) = self
                .sources
                .entry((g.0, g.1, g.2, g.3, key.clone()))
                .or_default();
            match kept.iter().position(|k| k.0 == s) {
                Some(i) => {
                    let k = &mut kept[i];
                    (k.1, k.2) = (k.1 + 1, k.2.max(at));
                }
                None if kept.len() < MAX_SOURCES => kept.push((s, 1, at)),
                None => {
                    let o = overflow.get_or_insert((0, at));
                    *o = (o.0 + 1, o.1.max(at));
                }
            }
        }
        let cert = u.cert_not_after.map(Timestamp::of);
        let e = self
            .inventory
            .entry((u.credential.to_owned(), key))
            .or_insert_with(|| InventoryEntry {
                credential: u.credential.to_owned(),
                kind: u.kind,
                principal: u.principal.map(str::to_owned),
                identity: u.identity.to_owned(),
                routes: BTreeSet::new(),
                first_seen: at,
                last_seen: at,
                count: 0,
                cert_not_after: None,
            });
        e.count += 1;
        e.first_seen = e.first_seen.min(at);
        if at >= e.last_seen {
            e.last_seen = at;
            e.identity = u.identity.to_owned();
            if cert.is_some() {
                e.cert_not_after = cert;
            }
        }
        e.routes.insert(u.route.to_owned());
    }

    fn usage_rows(&self) -> Vec<UsageRow> {
        self.usage
            .iter()
            .map(|((day, route, plan, credential), (kind, count))| UsageRow {
                day: *day,
                route: route.clone(),
                plan: (!plan.is_empty()).then(|| plan.clone()),
                credential: credential.clone(),
                kind: *kind,
                count: *count,
            })
            .collect()
    }

    fn source_rows(&self) -> Vec<SourceRow> {
        let mut out = Vec::new();
        for ((day, route, plan, credential, key), (kept, overflow)) in &self.sources {
            let row = |source, count, last_seen| SourceRow {
                day: *day,
                route: route.clone(),
                plan: (!plan.is_empty()).then(|| plan.clone()),
                credential: credential.clone(),
                key: key.clone(),
                source,
                count,
                last_seen,
            };
            out.extend(kept.iter().map(|(s, n, t)| row(Some(s.clone()), *n, *t)));
            out.extend(overflow.map(|(n, t)| row(None, n, t)));
        }
        out
    }
}

/// Equal, or the first difference (the whole lists are thousands of rows).
fn same<T: PartialEq + std::fmt::Debug>(got: Vec<T>, want: Vec<T>) {
    let first = got.iter().zip(&want).position(|(a, b)| a != b);
    assert!(
        first.is_none() && got.len() == want.len(),
        "row {first:?} of {} (want {}): got {:?}, want {:?}",
        got.len(),
        want.len(),
        first.map(|i| &got[i]),
        first.map(|i| &want[i]),
    );
}

fn sorted_usage(mut v: Vec<UsageRow>) -> Vec<UsageRow> {
    v.sort_by(|a, b| {
        (a.day, &a.route, &a.plan, &a.credential).cmp(&(b.day, &b.route, &b.plan, &b.credential))
    });
    v
}

fn sorted_sources(mut v: Vec<SourceRow>) -> Vec<SourceRow> {
    v.sort_by(|a, b| {
        (a.day, &a.route, &a.plan, &a.credential, &a.key, &a.source).cmp(&(
            b.day,
            &b.route,
            &b.plan,
            &b.credential,
            &b.key,
            &b.source,
        ))
    });
    v
}

/// The aggregate's usage, source and inventory rows are the model's.
fn same_as_model(p: &Pending, m: &Model) {
    same(sorted_usage(p.usage_rows()), m.usage_rows());
    same(
        sorted_sources(p.source_rows()),
        sorted_sources(m.source_rows()),
    );
    same(
        sorted_inventory(p.inventory_entries()),
        sorted_inventory(m.inventory.values().cloned()),
    );
}

fn sorted_inventory(v: impl Iterator<Item = InventoryEntry>) -> Vec<InventoryEntry> {
    let mut v: Vec<_> = v.collect();
    v.sort_by(|a, b| {
        (&a.credential, &a.principal, &a.identity).cmp(&(&b.credential, &b.principal, &b.identity))
    });
    v
}

/// A deterministic stream of requests: two days, three routes, with and without a plan, two
/// credentials, principals and bare identities, timestamps out of order, identities that change
/// under one principal, and sources in every spelling a caller can send (IPv4-mapped IPv6,
/// control and invisible characters, agents past the length cut, invalid UTF-8, none). One group
/// in three requests is a hot one that goes well past the source cap.
struct Stream(u64);

struct Req {
    day: &'static str,
    secs: u64,
    route: &'static str,
    plan: Option<&'static str>,
    cred: (&'static str, Kind),
    principal: Option<String>,
    identity: String,
    cert: Option<SystemTime>,
    ip: IpAddr,
    agent: Option<Vec<u8>>,
}

impl Stream {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }

    fn req(&mut self) -> Req {
        let hot = self.next(3) == 0;
        let pick = |s: &mut Stream, hot_value: u64, n: u64| if hot { hot_value } else { s.next(n) };
        let ip: IpAddr = match self.next(4) {
            0 => std::net::Ipv6Addr::from([0, 0, 0, 0, 0, 0xffff, 0x0a00, self.next(50) as u16])
                .into(),
            1 => format!("2001:db8::{:x}", self.next(50)).parse().unwrap(),
            _ => IpAddr::from([10, 0, 0, self.next(50) as u8]),
        };
        let long = "x".repeat(MAX_AGENT_LEN);
        let agent = match self.next(7) {
            0 => None,
            1 => Some(b"batch/1.0".to_vec()),
            2 => Some(b"a\x01b".to_vec()),
            3 => Some(b"a?b".to_vec()),
            4 => Some(format!("{long}{}", self.next(3)).into_bytes()),
            5 => Some(b"bad \xff utf8 \xe2\x80\xae".to_vec()),
            _ => Some(format!("svc/{}", self.next(3)).into_bytes()),
        };
        let principal = match pick(self, 1, 6) {
            0 => None,
            p => Some(format!("P{p}")),
        };
        Req {
            day: ["2026-12-01", "2026-12-02"][pick(self, 0, 2) as usize],
            secs: self.next(86_000),
            route: ["a", "b", "c"][pick(self, 0, 3) as usize],
            plan: [None, Some("plan")][pick(self, 1, 2) as usize],
            cred: [("keys", Kind::ApiKey), ("racf", Kind::Ldap)][pick(self, 0, 2) as usize],
            principal,
            identity: format!("spiffe://x/i{}", self.next(3)),
            cert: (self.next(2) == 0).then(|| at("2027-01-01", self.next(1000))),
            ip,
            agent,
        }
    }
}

const MAX_AGENT_LEN: usize = crate::state::sources::MAX_AGENT_CHARS;

fn at(day: &str, secs: u64) -> SystemTime {
    Date::parse(day).unwrap().midnight() + Duration::from_secs(secs)
}

/// Record `r` into `p` (by the request path's raw form, or by a formatted [`Source`], in turn)
/// and into the model.
fn record(p: &mut Pending, m: &mut Model, r: &Req, raw: bool) {
    let u = Usage {
        at: at(r.day, r.secs),
        route: r.route,
        plan: r.plan,
        credential: r.cred.0,
        kind: r.cred.1,
        identity: &r.identity,
        principal: r.principal.as_deref(),
        cert_not_after: r.cert,
        source: None,
    };
    let source = Source::of(r.ip, r.agent.as_deref());
    if raw {
        let s = SourceRef::Raw {
            ip: r.ip,
            user_agent: r.agent.as_deref(),
        };
        p.record_from(&u, Some(s));
    } else {
        p.record(&Usage {
            source: Some(&source),
            ..u
        });
    }
    m.record(&u, Some(source));
}

#[test]
fn counts_what_the_per_counter_maps_counted() {
    let (mut p, mut m, mut s) = (Pending::default(), Model::default(), Stream(7));
    for i in 0..6000 {
        let r = s.req();
        record(&mut p, &mut m, &r, i % 2 == 0);
    }
    same_as_model(&p, &m);
    let rows = p.source_rows();
    assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), 6000);
    // The hot group went past the cap: 32 sources listed and the rest in one overflow row.
    let hot: Vec<_> = rows
        .iter()
        .filter(|r| r.day == Date::parse("2026-12-01").unwrap())
        .filter(|r| (r.route.as_str(), r.key.as_str()) == ("a", "P1"))
        .filter(|r| r.credential == "keys" && r.plan.as_deref() == Some("plan"))
        .collect();
    assert_eq!(
        hot.iter().filter(|r| r.source.is_some()).count(),
        MAX_SOURCES
    );
    assert_eq!(hot.iter().filter(|r| r.source.is_none()).count(), 1);
}

#[test]
fn a_source_is_the_same_whatever_its_spelling() {
    let mut p = Pending::default();
    let u = Usage {
        at: at("2026-12-01", 5),
        route: "r",
        plan: None,
        credential: "keys",
        kind: Kind::ApiKey,
        identity: "spiffe://x/a",
        principal: Some("K1"),
        cert_not_after: None,
        source: None,
    };
    let v4: IpAddr = [10, 0, 0, 7].into();
    let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
    let long_a = format!("{}A", "x".repeat(MAX_AGENT_LEN));
    let long_b = format!("{}B", "x".repeat(MAX_AGENT_LEN));
    let spellings: [(IpAddr, Option<&[u8]>); 8] = [
        (v4, Some(b"a\x01b")),
        (mapped, Some(b"a\x7fb")),
        (v4, Some(b"a?b")),
        (v4, Some("a\u{202e}b".as_bytes())),
        (v4, Some(long_a.as_bytes())),
        (mapped, Some(long_b.as_bytes())),
        (v4, None),
        (v4, Some(b"")),
    ];
    for (ip, user_agent) in spellings {
        p.record_from(&u, Some(SourceRef::Raw { ip, user_agent }));
    }
    // As formatted sources, the same three.
    let formatted = Source::of(mapped, Some(b"a\x1bb"));
    p.record(&Usage {
        source: Some(&formatted),
        ..u
    });
    let rows = sorted_sources(p.source_rows());
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.source.clone().unwrap(), r.count))
        .collect();
    let src = |agent: &str| Source {
        ip: "10.0.0.7".into(),
        user_agent: agent.into(),
    };
    assert_eq!(
        got,
        [
            (src(""), 2),
            (src("a?b"), 5),
            (src(&"x".repeat(MAX_AGENT_LEN)), 2)
        ]
    );
    assert_eq!(p.usage_rows()[0].count, 9);
}

#[test]
fn sources_past_the_cap_are_counted_in_the_overflow_and_known_ones_still_as_themselves() {
    let mut p = Pending::default();
    let u = |secs| Usage {
        at: at("2026-12-01", secs),
        route: "r",
        plan: Some("plan"),
        credential: "racf",
        kind: Kind::Ldap,
        identity: "spiffe://x/a",
        principal: Some("JSMITH"),
        cert_not_after: None,
        source: None,
    };
    for i in 0..40u8 {
        let s = SourceRef::Raw {
            ip: [10, 0, 1, i].into(),
            user_agent: Some(b"batch/1.0"),
        };
        p.record_from(&u(u64::from(i)), Some(s));
    }
    let first = SourceRef::Raw {
        ip: [10, 0, 1, 0].into(),
        user_agent: Some(b"batch/1.0"),
    };
    p.record_from(&u(100), Some(first));
    let rows = p.source_rows();
    let kept: Vec<_> = rows.iter().filter(|r| r.source.is_some()).collect();
    assert_eq!(kept.len(), MAX_SOURCES);
    let overflow: Vec<_> = rows.iter().filter(|r| r.source.is_none()).collect();
    assert_eq!((overflow.len(), overflow[0].count), (1, 8));
    assert_eq!(overflow[0].last_seen, Timestamp::of(at("2026-12-01", 39)));
    let ten = kept
        .iter()
        .find(|r| r.source.as_ref().unwrap().ip == "10.0.1.0")
        .unwrap();
    assert_eq!(
        (ten.count, ten.last_seen),
        (2, Timestamp::of(at("2026-12-01", 100)))
    );
}

#[test]
fn a_put_back_loses_nothing() {
    let (mut p, mut m, mut s) = (Pending::default(), Model::default(), Stream(11));
    for i in 0..3000 {
        let r = s.req();
        record(&mut p, &mut m, &r, i % 3 != 0);
        if i == 1500 {
            // A flush takes everything, fails, and puts it back while requests keep coming.
            let taken = std::mem::take(&mut p);
            let r = s.req();
            record(&mut p, &mut m, &r, true);
            p.merge(taken);
        }
    }
    let mut access = Pending::default();
    let a = |path: &'static str| {
        Access::of("r", "spiffe://x/a", "GET", path, at("2026-12-01", 1)).unwrap()
    };
    assert!(access.record_access(&a("/a")));
    assert!(access.record_access(&a("/b")));
    let mut into = Pending::default();
    assert!(into.record_access(&a("/a")));
    into.merge(access);
    p.merge(into);
    same(sorted_usage(p.usage_rows()), m.usage_rows());
    same(
        sorted_inventory(p.inventory_entries()),
        sorted_inventory(m.inventory.values().cloned()),
    );
    // Which sources a hot group lists past the cap depends on the order they were put back in;
    // the counts per group do not.
    let per_group = |rows: Vec<SourceRow>| {
        let mut by: BTreeMap<_, u64> = BTreeMap::new();
        for r in rows {
            *by.entry((r.day, r.route, r.plan, r.credential, r.key))
                .or_default() += r.count;
        }
        by
    };
    assert_eq!(per_group(p.source_rows()), per_group(m.source_rows()));
    let mut access = p.access_rows();
    access.sort_by(|a, b| a.path.cmp(&b.path));
    let counts: Vec<_> = access.iter().map(|r| (r.path.as_str(), r.count)).collect();
    assert_eq!(counts, [("/a", 2), ("/b", 1)]);
}

#[test]
fn access_rows_are_capped_per_identity_and_route_as_before() {
    let mut p = Pending::default();
    let t = at("2026-12-01", 1);
    let paths: Vec<String> = (0..=MAX_ACCESS_ROWS_PER_IDENTITY)
        .map(|i| format!("/p{i}x"))
        .collect();
    for (i, path) in paths.iter().enumerate() {
        let kept = p.record_access(&Access::of("r", "spiffe://x/a", "GET", path, t).unwrap());
        assert_eq!(kept, i < MAX_ACCESS_ROWS_PER_IDENTITY, "{path}");
    }
    // A known row still counts; another identity still has its share.
    assert!(p.record_access(&Access::of("r", "spiffe://x/a", "GET", &paths[0], t).unwrap()));
    assert!(p.record_access(&Access::of("r", "spiffe://x/b", "GET", &paths[0], t).unwrap()));
    assert_eq!(p.access_rows().len(), MAX_ACCESS_ROWS_PER_IDENTITY + 1);
}

#[test]
fn two_workers_recording_at_once_lose_nothing() {
    let store = std::sync::Mutex::new(Pending::default());
    std::thread::scope(|scope| {
        for w in 0..2u8 {
            let store = &store;
            scope.spawn(move || {
                for i in 0..2000u16 {
                    let u = Usage {
                        at: at("2026-12-01", u64::from(i)),
                        route: "r",
                        plan: None,
                        credential: "keys",
                        kind: Kind::ApiKey,
                        identity: "spiffe://x/a",
                        principal: Some(["K1", "K2"][usize::from(i % 2)]),
                        cert_not_after: None,
                        source: None,
                    };
                    let s = SourceRef::Raw {
                        ip: [10, w, 0, (i % 40) as u8].into(),
                        user_agent: None,
                    };
                    store.lock().unwrap().record_from(&u, Some(s));
                }
            });
        }
    });
    let p = store.into_inner().unwrap();
    assert_eq!(p.usage_rows()[0].count, 4000);
    let inv: u64 = p.inventory_entries().map(|e| e.count).sum();
    assert_eq!(inv, 4000);
    let rows = p.source_rows();
    assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), 4000);
    // Per principal: 20 sources from each worker, 40 in all, 32 kept.
    for key in ["K1", "K2"] {
        let listed = rows
            .iter()
            .filter(|r| r.key == key && r.source.is_some())
            .count();
        assert_eq!(listed, MAX_SOURCES);
    }
}

/// A worker's remembered group and access row (`Memo`) count only a request of the same key:
/// a request that differs from the one before it on the same worker in any one part (day,
/// route, plan, credential, principal; route, identity, method, path) is counted as its own, and
/// the remembered entry still counts its own key afterwards.
#[test]
fn a_remembered_entry_counts_only_its_own_key() {
    let base = Usage {
        at: at("2026-12-01", 10),
        route: "r",
        plan: Some("p"),
        credential: "keys",
        kind: Kind::ApiKey,
        identity: "spiffe://x/a",
        principal: Some("K1"),
        cert_not_after: None,
        source: None,
    };
    let variants = [
        Usage {
            at: at("2026-12-02", 10),
            ..base
        },
        Usage {
            route: "r2",
            ..base
        },
        Usage { plan: None, ..base },
        Usage {
            plan: Some("p2"),
            ..base
        },
        Usage {
            credential: "keys2",
            ..base
        },
        Usage {
            principal: Some("K2"),
            ..base
        },
        Usage {
            principal: None,
            ..base
        },
    ];
    let (mut p, mut m) = (Pending::default(), Model::default());
    let src = Source::of([10, 0, 0, 1].into(), Some(b"ua"));
    for v in &variants {
        for u in [&base, v, v, &base, v] {
            p.record_from(
                u,
                Some(SourceRef::Raw {
                    ip: [10, 0, 0, 1].into(),
                    user_agent: Some(b"ua"),
                }),
            );
            m.record(u, Some(src.clone()));
        }
    }
    same_as_model(&p, &m);

    let t = at("2026-12-01", 10);
    let row = ("r", "spiffe://x/a", "GET", "/a");
    let rows = [
        ("r2", "spiffe://x/a", "GET", "/a"),
        ("r", "spiffe://x/b", "GET", "/a"),
        ("r", "spiffe://x/a", "PUT", "/a"),
        ("r", "spiffe://x/a", "GET", "/b"),
    ];
    let mut want: BTreeMap<(&str, &str, &str, &str), u64> = BTreeMap::new();
    for other in rows {
        for (route, identity, method, path) in [row, other, other, row, other] {
            assert!(p.record_access(&Access::of(route, identity, method, path, t).unwrap()));
            *want.entry((route, identity, method, path)).or_default() += 1;
        }
    }
    let got: BTreeMap<_, _> = p
        .access_rows()
        .into_iter()
        .map(|r| ((r.route, r.identity, r.method, r.path), r.count))
        .collect();
    let want: BTreeMap<_, _> = want
        .into_iter()
        .map(|((a, b, c, d), n)| ((a.into(), b.into(), c.into(), d.into()), n))
        .collect();
    assert_eq!(got, want);
}
