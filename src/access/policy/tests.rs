use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::api::NamespaceSelector;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn rule(name: &str) -> AccessRule {
    AccessRule {
        name: name.to_string(),
        namespaces: Some(NamespaceSelector {
            names: vec!["team-a".into()],
            match_labels: BTreeMap::new(),
        }),
        any_instance: true,
        ..AccessRule::default()
    }
}

fn spec(rules: Vec<AccessRule>) -> EcsPowerAccessPolicySpec {
    EcsPowerAccessPolicySpec { rules }
}

struct Ask {
    namespace: &'static str,
    labels: BTreeMap<String, String>,
    region: &'static str,
    instance: &'static str,
    action: AccessAction,
    tags: Option<BTreeMap<String, String>>,
}

impl Ask {
    fn new(namespace: &'static str) -> Self {
        Ask {
            namespace,
            labels: BTreeMap::new(),
            region: "cn-hangzhou",
            instance: "i-a1",
            action: AccessAction::Start,
            tags: None,
        }
    }

    fn decide(&self, name: &str, spec: Option<&EcsPowerAccessPolicySpec>) -> Verdict {
        let request = Request {
            namespace: self.namespace,
            namespace_labels: &self.labels,
            region: self.region,
            instance_id: self.instance,
            action: self.action,
            tags: self.tags.as_ref(),
        };
        decide(spec.map(|spec| Policy { name, spec }), &request)
    }
}

fn allow(rule: &str) -> Verdict {
    Verdict::Allow {
        rule: rule.to_string(),
    }
}

const NO_RULE: Verdict = Verdict::Deny(Denial::NoRule);

#[test]
fn the_decision_table() {
    let labelled = |labels: &[(&str, &str)]| {
        let mut r = rule("by-labels");
        r.namespaces = Some(NamespaceSelector {
            names: vec![],
            match_labels: map(labels),
        });
        r
    };
    let with = |f: &dyn Fn(&mut AccessRule)| {
        let mut r = rule("r");
        f(&mut r);
        r
    };
    let ask = Ask::new;
    let cases: Vec<(&str, Option<Vec<AccessRule>>, Ask, Verdict)> = vec![
        (
            "no policy: deny by default",
            None,
            ask("team-a"),
            Verdict::Deny(Denial::NoPolicy),
        ),
        (
            "an empty policy grants nothing",
            Some(vec![]),
            ask("team-a"),
            NO_RULE,
        ),
        (
            "listed by name",
            Some(vec![rule("r")]),
            ask("team-a"),
            allow("r"),
        ),
        (
            "another namespace",
            Some(vec![rule("r")]),
            ask("team-b"),
            NO_RULE,
        ),
        (
            "labels match",
            Some(vec![labelled(&[("team", "a")])]),
            Ask {
                labels: map(&[("team", "a"), ("env", "dev")]),
                ..ask("ns-x")
            },
            allow("by-labels"),
        ),
        (
            "labels differ",
            Some(vec![labelled(&[("team", "a")])]),
            Ask {
                labels: map(&[("team", "b")]),
                ..ask("ns-x")
            },
            NO_RULE,
        ),
        (
            "an empty matchLabels matches nothing",
            Some(vec![labelled(&[])]),
            Ask {
                labels: map(&[("team", "a")]),
                ..ask("ns-x")
            },
            NO_RULE,
        ),
        (
            "allNamespaces",
            Some(vec![with(&|r| {
                r.namespaces = None;
                r.all_namespaces = true;
            })]),
            ask("anything"),
            allow("r"),
        ),
        (
            "region listed",
            Some(vec![with(&|r| r.regions = vec!["cn-hangzhou".into()])]),
            ask("team-a"),
            allow("r"),
        ),
        (
            "region mismatch",
            Some(vec![with(&|r| r.regions = vec!["cn-beijing".into()])]),
            ask("team-a"),
            NO_RULE,
        ),
        (
            "ID listed",
            Some(vec![with(&|r| {
                r.any_instance = false;
                r.instance_ids = vec!["i-a1".into()];
            })]),
            ask("team-a"),
            allow("r"),
        ),
        (
            "ID not listed",
            Some(vec![with(&|r| {
                r.any_instance = false;
                r.instance_ids = vec!["i-other".into()];
            })]),
            ask("team-a"),
            NO_RULE,
        ),
        (
            "tag rule before the tags are known",
            Some(vec![with(&|r| {
                r.any_instance = false;
                r.instance_tags = map(&[("team", "a")]);
            })]),
            ask("team-a"),
            Verdict::NeedTags,
        ),
        (
            "tag subset: the instance carries more tags",
            Some(vec![with(&|r| {
                r.any_instance = false;
                r.instance_tags = map(&[("team", "a")]);
            })]),
            Ask {
                tags: Some(map(&[("team", "a"), ("env", "dev")])),
                ..ask("team-a")
            },
            allow("r"),
        ),
        (
            "tag value differs",
            Some(vec![with(&|r| {
                r.any_instance = false;
                r.instance_tags = map(&[("team", "a"), ("env", "dev")]);
            })]),
            Ask {
                tags: Some(map(&[("team", "a"), ("env", "prod")])),
                ..ask("team-a")
            },
            NO_RULE,
        ),
        (
            "a missing instance has no tags",
            Some(vec![with(&|r| {
                r.any_instance = false;
                r.instance_tags = map(&[("team", "a")]);
            })]),
            Ask {
                tags: Some(BTreeMap::new()),
                ..ask("team-a")
            },
            NO_RULE,
        ),
        (
            "a tag rule in another region needs no tags: denied without a read",
            Some(vec![with(&|r| {
                r.any_instance = false;
                r.instance_tags = map(&[("team", "a")]);
                r.regions = vec!["cn-beijing".into()];
            })]),
            ask("team-a"),
            NO_RULE,
        ),
        (
            "Stop-only asked to Stop",
            Some(vec![with(&|r| r.actions = Some(vec![AccessAction::Stop]))]),
            Ask {
                action: AccessAction::Stop,
                ..ask("team-a")
            },
            allow("r"),
        ),
        (
            "Stop-only asked to Start",
            Some(vec![with(&|r| r.actions = Some(vec![AccessAction::Stop]))]),
            ask("team-a"),
            NO_RULE,
        ),
        (
            "union of rules: the second allows",
            Some(vec![
                with(&|r| {
                    r.name = "stop-only".into();
                    r.actions = Some(vec![AccessAction::Stop]);
                }),
                rule("both"),
            ]),
            ask("team-a"),
            allow("both"),
        ),
        (
            "an invalid rule grants nothing (no instance condition)",
            Some(vec![with(&|r| r.any_instance = false)]),
            ask("team-a"),
            NO_RULE,
        ),
        (
            "an invalid rule grants nothing (empty actions), a valid one still does",
            Some(vec![
                with(&|r| {
                    r.name = "bad".into();
                    r.actions = Some(vec![]);
                }),
                rule("good"),
            ]),
            ask("team-a"),
            allow("good"),
        ),
        (
            "a repeated name: the second is invalid",
            Some(vec![
                with(&|r| r.namespaces = None),
                with(&|r| r.all_namespaces = true),
            ]),
            ask("team-a"),
            NO_RULE,
        ),
    ];
    for (what, rules, ask, expected) in cases {
        let spec = rules.map(spec);
        assert_eq!(ask.decide("default", spec.as_ref()), expected, "{what}");
    }
}

#[test]
fn a_policy_with_another_name_is_ignored() {
    let everything = spec(vec![AccessRule {
        name: "everything".into(),
        all_namespaces: true,
        any_instance: true,
        ..AccessRule::default()
    }]);
    assert_eq!(
        Ask::new("team-a").decide("default", Some(&everything)),
        allow("everything")
    );
    assert_eq!(
        Ask::new("team-a").decide("team-a-policy", Some(&everything)),
        Verdict::Deny(Denial::NoPolicy)
    );
}

#[test]
fn invalid_rules_are_named() {
    let mut nameless = rule("");
    nameless.any_instance = true;
    let mut no_instances = rule("loose");
    no_instances.any_instance = false;
    let problems = invalid_rules(&[rule("ok"), nameless, no_instances, rule("ok")]);
    let indexes: Vec<usize> = problems.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, vec![1, 2, 3]);
    assert!(problems[1].1.contains("loose"), "{}", problems[1].1);
    assert!(
        problems[2].1.contains("more than once"),
        "{}",
        problems[2].1
    );
}

#[test]
fn the_denial_message_names_namespace_instance_region_action_and_what_to_do() {
    let ask = Ask::new("team-b");
    let request = Request {
        namespace: ask.namespace,
        namespace_labels: &ask.labels,
        region: ask.region,
        instance_id: ask.instance,
        action: ask.action,
        tags: None,
    };
    for denial in [Denial::NoPolicy, Denial::NoRule] {
        let message = denial.message(&request);
        for needle in [
            "team-b",
            "Start",
            "i-a1",
            "cn-hangzhou",
            "cluster admin",
            "credentialsSecretRef",
        ] {
            assert!(message.contains(needle), "{needle} missing from {message}");
        }
    }
}

// --- the seeded property test --------------------------------------------------------------------

const NAMESPACES: [&str; 3] = ["team-a", "team-b", "ops"];
const REGIONS: [&str; 2] = ["cn-hangzhou", "cn-beijing"];
const INSTANCES: [&str; 3] = ["i-a1", "i-b2", "i-c3"];
const TAG_KEYS: [&str; 2] = ["team", "env"];
const TAG_VALUES: [&str; 2] = ["a", "b"];

fn pick<'a, T: ?Sized>(rng: &mut StdRng, from: &[&'a T]) -> &'a T {
    from[rng.random_range(0..from.len())]
}

fn some_of(rng: &mut StdRng, from: &[&str]) -> Vec<String> {
    from.iter()
        .filter(|_| rng.random_bool(0.4))
        .map(|s| (*s).to_string())
        .collect()
}

fn some_tags(rng: &mut StdRng) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    for key in TAG_KEYS {
        if rng.random_bool(0.4) {
            tags.insert(key.to_string(), pick(rng, &TAG_VALUES).to_string());
        }
    }
    tags
}

fn random_rule(rng: &mut StdRng, index: usize) -> AccessRule {
    AccessRule {
        // Now and then a repeated or empty name (an invalid rule).
        name: match rng.random_range(0..10) {
            0 => String::new(),
            1 => "dup".into(),
            _ => format!("rule-{index}"),
        },
        namespaces: rng.random_bool(0.8).then(|| NamespaceSelector {
            names: some_of(rng, &NAMESPACES),
            match_labels: some_tags(rng),
        }),
        all_namespaces: rng.random_bool(0.15),
        regions: some_of(rng, &REGIONS),
        instance_ids: some_of(rng, &INSTANCES),
        instance_tags: some_tags(rng),
        any_instance: rng.random_bool(0.2),
        actions: match rng.random_range(0..5) {
            0 => None,
            1 => Some(vec![]),
            2 => Some(vec![AccessAction::Start]),
            3 => Some(vec![AccessAction::Stop]),
            _ => Some(vec![AccessAction::Start, AccessAction::Stop]),
        },
    }
}

/// A second, naive reading of one rule: does it grant this request, given the instance's tags?
fn oracle_grants(
    rule: &AccessRule,
    all: &[AccessRule],
    request: &Request<'_>,
    tags: &BTreeMap<String, String>,
) -> bool {
    let valid = !rule.name.is_empty()
        && all.iter().position(|r| r.name == rule.name) == all.iter().position(|r| r == rule)
        && (rule.any_instance || !rule.instance_ids.is_empty() || !rule.instance_tags.is_empty())
        && rule.actions.as_ref().is_none_or(|a| !a.is_empty());
    valid
        && region_id_grant(rule, request)
        && rule
            .instance_tags
            .iter()
            .all(|(k, v)| tags.get(k) == Some(v))
}

/// The part of a rule that needs no tags: namespace, region, action and instance ID.
fn region_id_grant(rule: &AccessRule, request: &Request<'_>) -> bool {
    let namespace = rule.all_namespaces
        || rule.namespaces.as_ref().is_some_and(|s| {
            s.names.iter().any(|n| n == request.namespace)
                || (!s.match_labels.is_empty()
                    && s.match_labels
                        .iter()
                        .all(|(k, v)| request.namespace_labels.get(k) == Some(v)))
        });
    namespace
        && (rule.regions.is_empty() || rule.regions.iter().any(|r| r == request.region))
        && rule
            .actions
            .as_ref()
            .is_none_or(|a| a.contains(&request.action))
        && (rule.instance_ids.is_empty()
            || rule.instance_ids.iter().any(|i| i == request.instance_id))
}

/// What the reconcile does with the decision: decide before observing; on `NeedTags` read the
/// instance (a `DescribeInstances`) and decide again with its tags; write only on `Allow`. Returns
/// (read the instance, wrote).
fn pipeline(
    policy: Option<Policy<'_>>,
    request: &Request<'_>,
    instance_tags: &BTreeMap<String, String>,
) -> (bool, bool) {
    match decide(policy, request) {
        Verdict::Allow { .. } => (true, true),
        Verdict::Deny(_) => (false, false),
        Verdict::NeedTags => {
            let with_tags = Request {
                tags: Some(instance_tags),
                ..*request
            };
            let verdict = decide(policy, &with_tags);
            assert_ne!(verdict, Verdict::NeedTags, "known tags never need tags");
            (true, verdict.allows())
        }
    }
}

#[test]
fn random_policies_never_grant_outside_a_rule_and_id_or_region_denials_never_read() {
    let mut rng = StdRng::seed_from_u64(0x00ec_5ac3);
    let mut allowed = 0;
    let mut read_for_tags = 0;
    for _ in 0..3_000 {
        let rules: Vec<AccessRule> = (0..rng.random_range(0..4))
            .map(|i| random_rule(&mut rng, i))
            .collect();
        let spec = spec(rules);
        let name = if rng.random_bool(0.9) {
            "default"
        } else {
            "other"
        };
        let labels = some_tags(&mut rng);
        let instance_tags = some_tags(&mut rng);
        let request = Request {
            namespace: pick(&mut rng, &NAMESPACES),
            namespace_labels: &labels,
            region: pick(&mut rng, &REGIONS),
            instance_id: pick(&mut rng, &INSTANCES),
            action: if rng.random_bool(0.5) {
                AccessAction::Start
            } else {
                AccessAction::Stop
            },
            tags: None,
        };
        let policy = Some(Policy { name, spec: &spec });
        let (read, wrote) = pipeline(policy, &request, &instance_tags);
        let granted = name == "default"
            && spec
                .rules
                .iter()
                .any(|r| oracle_grants(r, &spec.rules, &request, &instance_tags));
        assert_eq!(
            wrote, granted,
            "policy {spec:?}, request {request:?}, tags {instance_tags:?}"
        );
        let reachable =
            name == "default" && spec.rules.iter().any(|r| region_id_grant(r, &request));
        if !reachable {
            assert!(
                !read,
                "an ID or region denial read the instance: {spec:?}, {request:?}"
            );
        }
        allowed += usize::from(wrote);
        read_for_tags += usize::from(read && !wrote);
    }
    // The generator reaches both sides of the decision.
    assert!(allowed > 100, "{allowed}");
    assert!(read_for_tags > 20, "{read_for_tags}");
}
