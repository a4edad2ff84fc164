//! Pure scenarios: literal policies in (`mk_policy`), snapshot and conditions out. No kube,
//! no I/O: what the reconcile loop computes before it decides to write anything.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;

use super::reconcile;
use super::status::{self, ServiceIndex, desired, events, same};
use super::stream::{Hub, Tally};
use crate::config::Snapshot;
use crate::policy::{CorsPolicy, CorsPolicySpec, CorsPolicyStatus};

mod transitions;

fn time(s: &str) -> Time {
    Time(s.parse().expect("timestamp"))
}

fn mk_policy(ns: &str, name: &str, created: &str, spec: &str) -> CorsPolicy {
    let spec: CorsPolicySpec =
        serde_saphyr::from_str(spec).unwrap_or_else(|e| panic!("{ns}/{name}: {e}"));
    let mut p = CorsPolicy::new(name, spec);
    p.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        creation_timestamp: (!created.is_empty()).then(|| time(created)),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    p
}

fn url(hosts: &str) -> String {
    format!("{{hosts: {hosts}, upstream: {{url: 'http://127.0.0.1:9000'}}}}")
}

fn svc(hosts: &str, name: &str, port: i32) -> String {
    format!("{{hosts: {hosts}, upstream: {{service: {{name: {name}, port: {port}}}}}}}")
}

fn services(list: &[(&str, &str, &[i32])]) -> ServiceIndex {
    list.iter()
        .map(|(ns, n, ports)| ((ns.to_string(), n.to_string()), ports.to_vec()))
        .collect()
}

fn snapshot(policies: &[CorsPolicy]) -> Snapshot {
    Snapshot::build(policies.iter().map(status::input_of).collect())
}

fn cond<'a>(
    s: &'a CorsPolicyStatus,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} condition"))
}

const T0: &str = "2024-01-01T00:00:00Z";
const T1: &str = "2024-01-02T00:00:00Z";
const T2: &str = "2024-01-03T00:00:00Z";
const NOW: &str = "2025-06-01T12:00:00Z";

/// `(policy, accepted reason, resolved reason, programmed reason)`
type Expect = (&'static str, &'static str, &'static str, &'static str);

struct Case {
    name: &'static str,
    policies: Vec<CorsPolicy>,
    services: ServiceIndex,
    tally: Tally,
    expect: Vec<Expect>,
    /// `(host, path, the policy that serves it or None)`
    routes: Vec<(&'static str, &'static str, Option<&'static str>)>,
    /// A substring the first policy's Accepted or ResolvedRefs message must contain.
    message: Option<(&'static str, &'static str, &'static str)>,
}

fn case(name: &'static str, policies: Vec<CorsPolicy>) -> Case {
    Case {
        name,
        policies,
        services: ServiceIndex::new(),
        tally: Tally::default(),
        expect: vec![],
        routes: vec![],
        message: None,
    }
}

fn cases() -> Vec<Case> {
    let none = Tally::default();
    let all3 = Tally {
        connected: 3,
        current: 3,
    };
    vec![
        Case {
            expect: vec![("shop/api", "Accepted", "ResolvedRefs", "Pending")],
            routes: vec![("api.example.com", "/x", Some("shop/api"))],
            message: Some(("shop/api", "Programmed", "no proxy connected yet")),
            ..case(
                "one url policy, no proxy yet",
                vec![mk_policy("shop", "api", T0, &url("[api.example.com]"))],
            )
        },
        Case {
            services: services(&[("shop", "storefront", &[8080])]),
            expect: vec![("shop/api", "Accepted", "ResolvedRefs", "Pending")],
            message: Some((
                "shop/api",
                "ResolvedRefs",
                "Service shop/storefront port 8080 exists",
            )),
            ..case(
                "service and port exist",
                vec![mk_policy(
                    "shop",
                    "api",
                    T0,
                    &svc("[api.example.com]", "storefront", 8080),
                )],
            )
        },
        Case {
            expect: vec![("shop/api", "Accepted", "BackendNotFound", "Pending")],
            routes: vec![("api.example.com", "/", Some("shop/api"))],
            message: Some((
                "shop/api",
                "ResolvedRefs",
                "Service shop/storefront does not exist",
            )),
            ..case(
                "missing service: still serves (502 at the edge)",
                vec![mk_policy(
                    "shop",
                    "api",
                    T0,
                    &svc("[api.example.com]", "storefront", 8080),
                )],
            )
        },
        Case {
            services: services(&[("shop", "storefront", &[80, 443])]),
            expect: vec![("shop/api", "Accepted", "BackendNotFound", "Pending")],
            message: Some((
                "shop/api",
                "ResolvedRefs",
                "has no port 8080 (it has: 80, 443)",
            )),
            ..case(
                "service without the port",
                vec![mk_policy(
                    "shop",
                    "api",
                    T0,
                    &svc("[api.example.com]", "storefront", 8080),
                )],
            )
        },
        Case {
            services: services(&[("other", "storefront", &[8080])]),
            expect: vec![("shop/api", "Accepted", "BackendNotFound", "Pending")],
            ..case(
                "a Service in another namespace does not resolve",
                vec![mk_policy(
                    "shop",
                    "api",
                    T0,
                    &svc("[api.example.com]", "storefront", 8080),
                )],
            )
        },
        Case {
            tally: all3,
            expect: vec![("shop/bad", "InvalidSpec", "ResolvedRefs", "Pending")],
            routes: vec![("api.example.com", "/", None)],
            message: Some(("shop/bad", "Accepted", "spec.hosts[0]")),
            ..case(
                "invalid host",
                vec![mk_policy(
                    "shop",
                    "bad",
                    T0,
                    &url("['api.example.com:443']"),
                )],
            )
        },
        Case {
            // The Service ref is still checked (and missing), so both problems show at once.
            expect: vec![("shop/bad", "InvalidSpec", "BackendNotFound", "Pending")],
            message: Some(("shop/bad", "Accepted", "exactly one of service or url")),
            ..case(
                "both upstreams",
                vec![mk_policy(
                    "shop",
                    "bad",
                    T0,
                    "{hosts: [a.example], upstream: {url: 'http://u:1', service: {name: s, port: 1}}}",
                )],
            )
        },
        Case {
            expect: vec![("shop/bad", "InvalidSpec", "ResolvedRefs", "Pending")],
            message: Some(("shop/bad", "Accepted", "allowCredentials")),
            ..case(
                "credentials with \"*\" exposed headers",
                vec![mk_policy(
                    "shop",
                    "bad",
                    T0,
                    "{hosts: [a.example], upstream: {url: 'http://u:1'}, cors: {allowOrigins: ['https://x.example'], exposeHeaders: ['*'], allowCredentials: true}}",
                )],
            )
        },
        Case {
            tally: all3,
            expect: vec![
                ("a/old", "Accepted", "ResolvedRefs", "Programmed"),
                ("a/new", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            routes: vec![("api.example.com", "/", Some("a/old"))],
            message: Some(("a/new", "Accepted", "already served by a/old")),
            ..case(
                "same host and path: the older wins",
                vec![
                    mk_policy("a", "new", T1, &url("[api.example.com]")),
                    mk_policy("a", "old", T0, &url("[api.example.com]")),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/x", "Accepted", "ResolvedRefs", "Pending"),
                ("b/x", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            message: Some(("b/x", "Accepted", "already served by a/x")),
            ..case(
                "equal timestamps: namespace/name order wins",
                vec![
                    mk_policy("b", "x", T0, &url("[api.example.com]")),
                    mk_policy("a", "x", T0, &url("[api.example.com]")),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/z", "Accepted", "ResolvedRefs", "Pending"),
                ("a/zz", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            ..case(
                "equal timestamps, same namespace: name order wins",
                vec![
                    mk_policy("a", "zz", T0, &url("[api.example.com]")),
                    mk_policy("a", "z", T0, &url("[api.example.com]")),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/v1", "Accepted", "ResolvedRefs", "Pending"),
                ("a/v2", "Accepted", "ResolvedRefs", "Pending"),
            ],
            routes: vec![
                ("api.example.com", "/v1/x", Some("a/v1")),
                ("api.example.com", "/v2", Some("a/v2")),
                ("api.example.com", "/v3", None),
            ],
            ..case(
                "overlapping hosts, different paths: both serve",
                vec![
                    mk_policy(
                        "a",
                        "v1",
                        T1,
                        "{hosts: [api.example.com, www.example.com], paths: [/v1], upstream: {url: 'http://u:1'}}",
                    ),
                    mk_policy(
                        "a",
                        "v2",
                        T0,
                        "{hosts: [api.example.com], paths: [/v2], upstream: {url: 'http://u:1'}}",
                    ),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/root", "Accepted", "ResolvedRefs", "Pending"),
                ("a/v1", "Accepted", "ResolvedRefs", "Pending"),
            ],
            routes: vec![
                ("api.example.com", "/v1/x", Some("a/v1")),
                ("api.example.com", "/v10", Some("a/root")),
                ("api.example.com", "/", Some("a/root")),
            ],
            ..case(
                "root and a prefix: longest prefix routes, no conflict",
                vec![
                    mk_policy("a", "root", T1, &url("[api.example.com]")),
                    mk_policy(
                        "a",
                        "v1",
                        T0,
                        "{hosts: [api.example.com], paths: [/v1], upstream: {url: 'http://u:1'}}",
                    ),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/exact", "Accepted", "ResolvedRefs", "Pending"),
                ("a/wild", "Accepted", "ResolvedRefs", "Pending"),
            ],
            routes: vec![
                ("api.example.com", "/", Some("a/exact")),
                ("eu.api.example.com", "/", Some("a/wild")),
                ("example.com", "/", None),
            ],
            ..case(
                "wildcard against exact: no conflict, exact wins its host",
                vec![
                    mk_policy("a", "wild", T0, &url("['*.example.com']")),
                    mk_policy("a", "exact", T1, &url("[api.example.com]")),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/w1", "Accepted", "ResolvedRefs", "Pending"),
                ("a/w2", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            message: Some(("a/w2", "Accepted", "host *.example.com path /")),
            ..case(
                "the same wildcard twice conflicts",
                vec![
                    mk_policy("a", "w1", T0, &url("['*.example.com']")),
                    mk_policy("a", "w2", T1, &url("['*.example.com']")),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/lower", "Accepted", "ResolvedRefs", "Pending"),
                ("a/upper", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            ..case(
                "hosts compare case-insensitively",
                vec![
                    mk_policy("a", "lower", T0, &url("[api.example.com]")),
                    mk_policy("a", "upper", T1, &url("[API.Example.com]")),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/one", "Accepted", "ResolvedRefs", "Pending"),
                ("a/two", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            ..case(
                "paths compare normalised (/v1 and /v1/)",
                vec![
                    mk_policy(
                        "a",
                        "one",
                        T0,
                        "{hosts: [api.example.com], paths: [/v1], upstream: {url: 'http://u:1'}}",
                    ),
                    mk_policy(
                        "a",
                        "two",
                        T1,
                        "{hosts: [api.example.com], paths: [/v1/], upstream: {url: 'http://u:1'}}",
                    ),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/first", "Accepted", "ResolvedRefs", "Pending"),
                ("a/second", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            routes: vec![
                ("www.example.com", "/", None),
                ("shop.example.com", "/", Some("a/first")),
            ],
            message: Some(("a/second", "Accepted", "host shop.example.com")),
            ..case(
                "a conflict on one host rejects the whole policy",
                vec![
                    mk_policy("a", "first", T0, &url("[shop.example.com]")),
                    mk_policy(
                        "a",
                        "second",
                        T1,
                        &url("[www.example.com, shop.example.com]"),
                    ),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/broken", "InvalidSpec", "ResolvedRefs", "Pending"),
                ("a/good", "Accepted", "ResolvedRefs", "Pending"),
            ],
            routes: vec![("api.example.com", "/", Some("a/good"))],
            ..case(
                "an older invalid policy never blocks a valid one",
                vec![
                    mk_policy(
                        "a",
                        "broken",
                        T0,
                        "{hosts: [api.example.com], upstream: {url: 'ftp://u'}}",
                    ),
                    mk_policy("a", "good", T1, &url("[api.example.com]")),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/dated", "Accepted", "ResolvedRefs", "Pending"),
                ("a/aaa", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            ..case(
                "a policy without creationTimestamp loses to one with it",
                vec![
                    mk_policy("a", "aaa", "", &url("[api.example.com]")),
                    mk_policy("a", "dated", T2, &url("[api.example.com]")),
                ],
            )
        },
        Case {
            tally: all3,
            expect: vec![("a/p", "Accepted", "ResolvedRefs", "Programmed")],
            message: Some(("a/p", "Programmed", "every connected proxy serves config")),
            ..case(
                "every proxy current: Programmed",
                vec![mk_policy("a", "p", T0, &url("[api.example.com]"))],
            )
        },
        Case {
            tally: Tally {
                connected: 3,
                current: 2,
            },
            expect: vec![("a/p", "Accepted", "ResolvedRefs", "Pending")],
            message: Some((
                "a/p",
                "Programmed",
                "is not yet served by every connected proxy",
            )),
            ..case(
                "one proxy behind: Pending",
                vec![mk_policy("a", "p", T0, &url("[api.example.com]"))],
            )
        },
        Case {
            tally: none,
            expect: vec![
                ("a/api", "Accepted", "ResolvedRefs", "Pending"),
                ("b/api", "Accepted", "ResolvedRefs", "Pending"),
            ],
            ..case(
                "same name in two namespaces, different hosts",
                vec![
                    mk_policy("a", "api", T0, &url("[a.example.com]")),
                    mk_policy("b", "api", T0, &url("[b.example.com]")),
                ],
            )
        },
    ]
}

#[test]
fn table_of_scenarios() {
    let now = time(NOW);
    let all = cases();
    assert!(all.len() >= 20, "the issue asks for at least 20 scenarios");
    for c in all {
        let snap = snapshot(&c.policies);
        for (id, accepted, resolved, programmed) in &c.expect {
            let p = c
                .policies
                .iter()
                .find(|p| status::id_of(p).to_string() == *id)
                .unwrap_or_else(|| panic!("{}: no policy {id}", c.name));
            let s = desired(p, &snap, &c.services, c.tally, &now);
            let got = (
                cond(&s, status::ACCEPTED).reason.as_str(),
                cond(&s, status::RESOLVED_REFS).reason.as_str(),
                cond(&s, status::PROGRAMMED).reason.as_str(),
            );
            assert_eq!(got, (*accepted, *resolved, *programmed), "{}: {id}", c.name);
            assert_eq!(
                cond(&s, status::ACCEPTED).status == "True",
                *accepted == "Accepted",
                "{}: {id}",
                c.name
            );
            assert_eq!(
                cond(&s, status::PROGRAMMED).status == "True",
                *programmed == "Programmed",
                "{}: {id}",
                c.name
            );
            // configVersion: only a policy that is in the snapshot names its version, which
            // is its own (id and spec), not the whole snapshot's (issue 11).
            let expected_version =
                (*accepted == "Accepted").then(|| super::stream::policy_version(id, &p.spec));
            assert_eq!(s.config_version, expected_version, "{}: {id}", c.name);
            assert_eq!(s.observed_generation, Some(1));
            assert!(
                s.conditions
                    .iter()
                    .all(|c| c.observed_generation == Some(1) && c.last_transition_time == now)
            );
        }
        for (host, path, want) in &c.routes {
            let got = snap.route(host, path).map(|(_, p)| p.id.to_string());
            assert_eq!(got.as_deref(), *want, "{}: route {host}{path}", c.name);
        }
        if let Some((id, t, needle)) = c.message {
            let p = c
                .policies
                .iter()
                .find(|p| status::id_of(p).to_string() == id)
                .expect("policy");
            let s = desired(p, &snap, &c.services, c.tally, &now);
            let m = &cond(&s, t).message;
            assert!(
                m.contains(needle),
                "{}: {t} message {m:?} lacks {needle:?}",
                c.name
            );
        }
    }
}
