//! The elector under tokio's paused clock, against kube-sandbox's router in memory (the real
//! Lease semantics: resourceVersion conflicts, 404 after delete), behind a switch that cuts the
//! connection (every request fails) or makes it hang.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::DeleteParams;
use kube::client::Body;

use super::*;

/// What the connection to the API server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Up,
    /// Every request fails at once.
    Down,
    /// Every request hangs.
    Hung,
}

/// kube-sandbox's router behind a switch, counting lease writes.
#[derive(Clone)]
struct Wire {
    router: axum::Router,
    link: Arc<Mutex<Link>>,
    puts: Arc<AtomicUsize>,
}

impl tower::Service<Request<Body>> for Wire {
    type Response = Response<axum::body::Body>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let link = *self.link.lock().unwrap();
        if req.method() == http::Method::PUT {
            self.puts.fetch_add(1, Ordering::SeqCst);
        }
        let router = self.router.clone();
        Box::pin(async move {
            match link {
                Link::Up => {
                    let (parts, body) = req.into_parts();
                    let req = Request::from_parts(parts, axum::body::Body::new(body));
                    tower::ServiceExt::oneshot(router, req)
                        .await
                        .map_err(|e| match e {})
                }
                Link::Down => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "cut",
                )),
                Link::Hung => futures::future::pending().await,
            }
        })
    }
}

/// One shared API server; each candidate gets its own connection (switch).
struct Cluster {
    router: axum::Router,
    admin: Client,
}

impl Cluster {
    async fn new() -> Self {
        let router =
            kube_sandbox::server::in_memory_router(&kube_sandbox::SandboxConfig::default());
        let admin = Client::new(router.clone(), "default");
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).unwrap();
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        Cluster { router, admin }
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.admin.clone(), "default")
    }

    async fn lease(&self) -> Option<LeaseSpec> {
        self.leases()
            .get_opt(NAME)
            .await
            .unwrap()
            .and_then(|l| l.spec)
    }

    /// A lease written by someone else, with their `renewTime`.
    async fn held_by(&self, holder: &str, renew: jiff::Timestamp) {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renew)),
                acquire_time: Some(MicroTime(renew)),
                lease_transitions: Some(3),
                ..LeaseSpec::default()
            }),
        };
        match self.leases().get_opt(NAME).await.unwrap() {
            None => {
                self.leases()
                    .create(&PostParams::default(), &lease)
                    .await
                    .unwrap();
            }
            Some(current) => {
                let mut update = lease;
                update.metadata = current.metadata;
                self.leases()
                    .replace(NAME, &PostParams::default(), &update)
                    .await
                    .unwrap();
            }
        }
    }

    fn candidate(&self, identity: &str) -> Candidate {
        let link = Arc::new(Mutex::new(Link::Up));
        let puts = Arc::new(AtomicUsize::new(0));
        let wire = Wire {
            router: self.router.clone(),
            link: link.clone(),
            puts: puts.clone(),
        };
        let gate = Arc::new(WriteGate::leased(Duration::from_secs(5)));
        let metrics = Arc::new(Metrics::new());
        let elector = Elector::new(
            Api::namespaced(Client::new(wire, "default"), "default"),
            config(identity),
            gate.clone(),
            metrics.clone(),
        );
        Candidate {
            elector,
            gate,
            metrics,
            link,
            puts,
        }
    }
}

struct Candidate {
    elector: Elector,
    gate: Arc<WriteGate>,
    metrics: Arc<Metrics>,
    link: Arc<Mutex<Link>>,
    puts: Arc<AtomicUsize>,
}

impl Candidate {
    fn set_link(&self, link: Link) {
        *self.link.lock().unwrap() = link;
    }

    fn metric(&self, line: &str) -> bool {
        self.metrics.render(&[]).lines().any(|l| l == line)
    }
}

const NAME: &str = "ecs-power-operator";
const LEASE: Duration = Duration::from_secs(15);
const RENEW: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);

fn config(identity: &str) -> ElectionConfig {
    ElectionConfig {
        name: NAME.into(),
        namespace: "default".into(),
        identity: identity.into(),
        lease_duration: LEASE,
        renew_deadline: RENEW,
        retry_period: RETRY,
    }
}

fn holder(spec: &LeaseSpec) -> &str {
    spec.holder_identity.as_deref().unwrap_or("")
}

#[test]
fn client_go_inequalities_are_checked() {
    assert_eq!(config("a").validate(), Ok(()));
    let with = |lease: u64, renew_ms: u64, retry_ms: u64| ElectionConfig {
        lease_duration: Duration::from_secs(lease),
        renew_deadline: Duration::from_millis(renew_ms),
        retry_period: Duration::from_millis(retry_ms),
        ..config("a")
    };
    assert!(matches!(
        with(10, 10_000, 2_000).validate(),
        Err(ConfigError::LeaseNotLongerThanRenew { .. })
    ));
    // 2 s × 1.2 = 2.4 s: a renew deadline of 2.4 s is not enough, 2.5 s is.
    assert!(matches!(
        with(15, 2_400, 2_000).validate(),
        Err(ConfigError::RenewNotLongerThanRetry { .. })
    ));
    assert_eq!(with(15, 2_500, 2_000).validate(), Ok(()));
    assert!(matches!(
        with(0, 0, 0).validate(),
        Err(ConfigError::LeaseNotWholeSeconds(_))
    ));
    let no_namespace = ElectionConfig {
        namespace: String::new(),
        ..config("a")
    };
    assert_eq!(no_namespace.validate(), Err(ConfigError::NoNamespace));
    // The write timeout fits the validity left in steady state.
    assert_eq!(config("a").write_timeout(), Duration::from_secs(5));
    assert_eq!(
        with(15, 10_000, 8_000).write_timeout(),
        Duration::from_millis(400)
    );
}

#[test]
fn identities_are_the_pod_name_plus_a_random_suffix() {
    let a = identity(Some("operator-0"));
    let b = identity(Some("operator-0"));
    assert!(a.starts_with("operator-0_"), "{a}");
    assert_ne!(a, b);
}

#[tokio::test(start_paused = true)]
async fn acquires_a_free_lease_by_creating_it() {
    let cluster = Cluster::new().await;
    let mut a = cluster.candidate("a");
    assert!(!a.gate.is_open());
    let start = Instant::now();
    assert_eq!(
        a.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading(start + RENEW)
    );
    assert!(a.gate.is_open());
    let spec = cluster.lease().await.unwrap();
    assert_eq!(holder(&spec), "a");
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(0));
    assert!(a.metric("ecs_power_leader 1"));
    assert!(a.metric("ecs_power_leader_transitions_total 1"));
}

#[tokio::test(start_paused = true)]
async fn acquires_a_lease_with_an_empty_holder_at_once() {
    let cluster = Cluster::new().await;
    cluster.held_by("", jiff::Timestamp::now()).await;
    let mut a = cluster.candidate("a");
    assert!(matches!(
        a.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading(_)
    ));
    let spec = cluster.lease().await.unwrap();
    assert_eq!(holder(&spec), "a");
    assert_eq!(spec.lease_transitions, Some(4), "a transition is counted");
}

#[tokio::test(start_paused = true)]
async fn acquires_an_expired_lease_a_lease_duration_after_its_own_observation() {
    let cluster = Cluster::new().await;
    // The holder's renewTime is an hour old (its clock is skewed, or it died long ago): that
    // does not count; only this process's own observation does.
    cluster
        .held_by(
            "old",
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
        )
        .await;
    let mut a = cluster.candidate("a");
    let observed = Instant::now();
    assert_eq!(
        a.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy("old".into())
    );
    tokio::time::advance(LEASE.saturating_sub(Duration::from_millis(1))).await;
    assert_eq!(
        a.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy("old".into())
    );
    assert!(!a.gate.is_open());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(matches!(
        a.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading(_)
    ));
    assert!(Instant::now() >= observed + LEASE);
    assert_eq!(holder(&cluster.lease().await.unwrap()), "a");
}

#[tokio::test(start_paused = true)]
async fn a_renewal_with_a_future_renew_time_restarts_the_followers_wait() {
    let cluster = Cluster::new().await;
    // renewTime a day in the future: a follower trusting it would never take over.
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    cluster.held_by("skewed", future).await;
    let mut a = cluster.candidate("a");
    assert!(matches!(
        a.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy(_)
    ));
    // The holder renews after 10 s (the record changes): the wait counts from then.
    tokio::time::advance(Duration::from_secs(10)).await;
    cluster
        .held_by("skewed", future + jiff::SignedDuration::from_secs(10))
        .await;
    let renewed_seen = Instant::now();
    assert!(matches!(
        a.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy(_)
    ));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(
        matches!(
            a.elector.try_acquire_or_renew().await.unwrap(),
            Attempt::HeldBy(_)
        ),
        "20 s after the first observation but only 10 s after the renewal was seen"
    );
    tokio::time::sleep_until(renewed_seen + LEASE).await;
    assert!(matches!(
        a.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn the_leader_renews_every_retry_period() {
    let cluster = Cluster::new().await;
    let mut a = cluster.candidate("a");
    let stop = CancellationToken::new();
    assert!(a.elector.acquire(&stop).await);
    let first = cluster.lease().await.unwrap().renew_time.unwrap();
    let puts_before = a.puts.load(Ordering::SeqCst);
    let renewing = tokio::spawn({
        let stop = stop.clone();
        async move {
            let result = a.elector.renew(&stop).await;
            (a, result)
        }
    });
    // 10 retry periods (plus a little): 10 renewals, each a PUT with a newer renewTime.
    tokio::time::sleep(RETRY * 10 + Duration::from_millis(100)).await;
    stop.cancel();
    let (a, result) = renewing.await.unwrap();
    assert_eq!(result, Ok(()));
    assert_eq!(a.puts.load(Ordering::SeqCst) - puts_before, 10);
    let last = cluster.lease().await.unwrap().renew_time.unwrap();
    assert!(last.0 > first.0);
    assert!(
        a.gate.is_open(),
        "stopping renewals alone does not close the gate"
    );
}

/// After the renew deadline of failed renewals the gate is closed, before a lease duration
/// has passed since the last successful renewal, whether requests fail fast or hang.
async fn renewals_fail(link: Link) {
    let cluster = Cluster::new().await;
    let mut a = cluster.candidate("a");
    let link_a = a.link.clone();
    let stop = CancellationToken::new();
    assert!(a.elector.acquire(&stop).await);
    // Two good renewals, then the link goes.
    let renewing = tokio::spawn({
        let stop = stop.clone();
        async move {
            let result = a.elector.renew(&stop).await;
            (a, result)
        }
    });
    tokio::time::sleep(RETRY * 2 + Duration::from_millis(100)).await;
    let last_success_start = Instant::now() - Duration::from_millis(100);
    let mut b = cluster.candidate("b");
    assert!(matches!(
        b.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy(_)
    ));
    let b_observed = Instant::now();
    *link_a.lock().unwrap() = link;
    let (a, result) = renewing.await.unwrap();
    let lost_at = Instant::now();
    assert_eq!(result, Err(Lost::RenewDeadline));
    assert!(!a.gate.is_open());
    assert!(a.gate.admit().is_none());
    assert!(a.metric("ecs_power_leader 0"));
    assert!(
        lost_at <= last_success_start + RENEW,
        "the gate closed {:?} after the last successful renewal began",
        lost_at - last_success_start
    );
    assert!(lost_at < last_success_start + LEASE);
    // The follower cannot lead before a lease duration after its own observation, which is after
    // the old leader stopped.
    tokio::time::sleep_until(b_observed + LEASE - Duration::from_millis(1)).await;
    assert!(matches!(
        b.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy(_)
    ));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(matches!(
        b.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading(_)
    ));
    assert!(Instant::now() > lost_at);
}

#[tokio::test(start_paused = true)]
async fn failed_renewals_close_the_gate_by_the_renew_deadline() {
    renewals_fail(Link::Down).await;
}

#[tokio::test(start_paused = true)]
async fn hung_renewals_close_the_gate_by_the_renew_deadline() {
    renewals_fail(Link::Hung).await;
}

#[tokio::test(start_paused = true)]
async fn two_concurrent_acquirers_give_exactly_one_leader() {
    let cluster = Cluster::new().await;
    // A free lease (both create), then an expired one (both update with the same version).
    for round in 0..2 {
        let mut a = cluster.candidate("a");
        let mut b = cluster.candidate("b");
        if round == 1 {
            cluster.held_by("gone", jiff::Timestamp::now()).await;
            assert!(matches!(
                a.elector.try_acquire_or_renew().await.unwrap(),
                Attempt::HeldBy(_)
            ));
            assert!(matches!(
                b.elector.try_acquire_or_renew().await.unwrap(),
                Attempt::HeldBy(_)
            ));
            tokio::time::advance(LEASE).await;
        }
        let (ra, rb) = tokio::join!(
            a.elector.try_acquire_or_renew(),
            b.elector.try_acquire_or_renew()
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let leaders = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Attempt::Leading(_)))
            .count();
        assert_eq!(leaders, 1, "round {round}: {ra:?} / {rb:?}");
        assert_eq!(a.gate.is_open(), matches!(ra, Attempt::Leading(_)));
        assert_eq!(b.gate.is_open(), matches!(rb, Attempt::Leading(_)));
        let winner = if a.gate.is_open() { "a" } else { "b" };
        assert_eq!(holder(&cluster.lease().await.unwrap()), winner);
        // The loser stays a follower on its next attempt.
        let loser = if winner == "a" { &mut b } else { &mut a };
        assert!(matches!(
            loser.elector.try_acquire_or_renew().await.unwrap(),
            Attempt::HeldBy(h) if h == winner
        ));
        cluster
            .leases()
            .delete(NAME, &DeleteParams::default())
            .await
            .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_stale_resource_version_is_a_conflict() {
    let cluster = Cluster::new().await;
    cluster.held_by("x", jiff::Timestamp::now()).await;
    let stale = cluster.leases().get(NAME).await.unwrap();
    cluster.held_by("y", jiff::Timestamp::now()).await;
    let err = cluster
        .leases()
        .replace(NAME, &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
}

#[tokio::test(start_paused = true)]
async fn a_deleted_lease_is_created_again_by_the_leader() {
    let cluster = Cluster::new().await;
    let mut a = cluster.candidate("a");
    assert!(matches!(
        a.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading(_)
    ));
    cluster
        .leases()
        .delete(NAME, &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::advance(RETRY).await;
    assert!(matches!(
        a.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading(_)
    ));
    assert_eq!(holder(&cluster.lease().await.unwrap()), "a");
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_finds_another_holder_loses_at_once() {
    let cluster = Cluster::new().await;
    let mut a = cluster.candidate("a");
    let stop = CancellationToken::new();
    assert!(a.elector.acquire(&stop).await);
    cluster.held_by("b", jiff::Timestamp::now()).await;
    let started = Instant::now();
    assert_eq!(a.elector.renew(&stop).await, Err(Lost::TakenBy("b".into())));
    assert_eq!(Instant::now() - started, RETRY, "lost at the first renewal");
    assert!(!a.gate.is_open());
}

#[tokio::test(start_paused = true)]
async fn release_clears_only_our_own_lease() {
    let cluster = Cluster::new().await;
    let mut a = cluster.candidate("a");
    assert!(matches!(
        a.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading(_)
    ));
    // Someone else holds it now (a's lease expired while it was paused): a's release must not
    // clear it.
    cluster.held_by("b", jiff::Timestamp::now()).await;
    assert!(!a.elector.release().await.unwrap());
    assert!(!a.gate.is_open());
    assert_eq!(holder(&cluster.lease().await.unwrap()), "b");

    // Our own lease is released: empty holder, 1 s, and a follower takes it at once.
    let cluster = Cluster::new().await;
    let mut a = cluster.candidate("a");
    let mut b = cluster.candidate("b");
    assert!(matches!(
        a.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading(_)
    ));
    assert!(matches!(
        b.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy(_)
    ));
    assert!(a.elector.release().await.unwrap());
    assert!(!a.gate.is_open());
    let spec = cluster.lease().await.unwrap();
    assert_eq!(holder(&spec), "");
    assert_eq!(spec.lease_duration_seconds, Some(1));
    assert!(matches!(
        b.elector.try_acquire_or_renew().await.unwrap(),
        Attempt::Leading(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_follower_that_cannot_reach_the_api_server_never_opens_its_gate() {
    let cluster = Cluster::new().await;
    let mut a = cluster.candidate("a");
    a.set_link(Link::Hung);
    let started = Instant::now();
    assert!(matches!(
        a.elector.try_acquire_or_renew().await,
        Err(AttemptError::Timeout)
    ));
    assert_eq!(
        Instant::now() - started,
        RENEW / 2,
        "bounded by the request timeout"
    );
    assert!(!a.gate.is_open());
}
