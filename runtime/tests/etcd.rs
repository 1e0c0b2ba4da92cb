//! Runtime against a real etcd on a free port with a temporary data dir.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pacer_crd::{App, AppStatus, Node, NodeSpec, PortRange, Resources};
use pacer_runtime::lease::{Lease, Terms};
use pacer_runtime::testing::{TestEtcd, eventually};
use pacer_runtime::watcher::{self, Event};
use pacer_runtime::{Action, Api, Controller, Reflector};
use tokio_util::sync::CancellationToken;

async fn harness() -> TestEtcd {
    TestEtcd::start().await
}

async fn next_event<K>(rx: &mut watcher::Events<K>) -> Event<K> {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("an event within 20 s")
        .expect("watcher alive")
}

fn names(apps: &[App]) -> Vec<String> {
    apps.iter()
        .map(|a| a.metadata.name.clone().unwrap())
        .collect()
}

#[tokio::test]
async fn replace_compares_mod_revision() {
    let h = harness().await;
    let apps: Api<App> = Api::new(&h.client);
    let created = apps.create(&App::test("web")).await.unwrap();
    assert!(
        apps.create(&App::test("web"))
            .await
            .unwrap_err()
            .to_string()
            .contains("already exists")
    );

    let (mut a, mut b) = (created.clone(), created.clone());
    a.spec.instances = 2;
    b.spec.instances = 3;
    apps.replace(&a).await.unwrap();
    let err = apps.replace(&b).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(
        apps.get_existing("web").await.unwrap().spec.instances,
        2,
        "the losing write changed nothing"
    );

    let status = AppStatus {
        tasks_running: 2,
        ..Default::default()
    };
    let updated = apps.update_status("web", status).await.unwrap();
    assert_eq!(updated.spec.instances, 2, "a status update keeps the spec");
    assert_eq!(updated.status.unwrap().tasks_running, 2);
    assert!(apps.delete("web").await.unwrap());
    assert!(apps.get("web").await.unwrap().is_none());
}

#[tokio::test]
async fn watch_resumes_after_etcd_restart_without_relisting() {
    let mut h = harness().await;
    let apps: Api<App> = Api::new(&h.client);
    let token = CancellationToken::new();
    let mut rx = watcher::watch(apps.clone(), "", token.clone());
    assert!(matches!(next_event(&mut rx).await, Event::Restarted(v) if v.is_empty()));
    apps.create(&App::test("a")).await.unwrap();
    assert!(
        matches!(next_event(&mut rx).await, Event::Applied(a) if a.metadata.name.as_deref() == Some("a"))
    );

    h.etcd.restart().await.unwrap();
    let mut created = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !created {
        assert!(
            Instant::now() < deadline,
            "could not write after the etcd restart"
        );
        created = apps.create(&App::test("b")).await.is_ok();
    }
    match next_event(&mut rx).await {
        Event::Applied(b) => assert_eq!(b.metadata.name.as_deref(), Some("b")),
        other => {
            panic!("expected the write after the restart, resumed without a relist, got {other:?}")
        }
    }
    token.cancel();
}

#[tokio::test]
async fn watch_from_a_compacted_revision_relists() {
    let h = harness().await;
    let apps: Api<App> = Api::new(&h.client);
    apps.create(&App::test("a")).await.unwrap();
    let b = apps.create(&App::test("b")).await.unwrap();
    let rev: i64 = b.metadata.resource_version.unwrap().parse().unwrap();
    h.client.etcd().compact(rev, None).await.unwrap();

    let token = CancellationToken::new();
    let previous = watcher::Previous::Values;
    let mut rx = watcher::watch_from(apps.clone(), "", Some(1), previous, token.clone());
    match next_event(&mut rx).await {
        Event::Restarted(all) => assert_eq!(names(&all), vec!["a", "b"]),
        other => panic!("expected a relist, got {other:?}"),
    }
    apps.create(&App::test("c")).await.unwrap();
    assert!(
        matches!(next_event(&mut rx).await, Event::Applied(c) if c.metadata.name.as_deref() == Some("c"))
    );
    token.cancel();
}

#[tokio::test]
async fn deletions_come_with_the_record_or_the_key_alone_as_asked() {
    let h = harness().await;
    let apps: Api<App> = Api::new(&h.client);
    let token = CancellationToken::new();
    let mut whole = watcher::watch(apps.clone(), "", token.clone());
    let mut keys = watcher::watch_without_previous(apps.clone(), "", token.clone());
    for rx in [&mut whole, &mut keys] {
        assert!(matches!(next_event(rx).await, Event::Restarted(v) if v.is_empty()));
    }
    apps.create(&App::test("a")).await.unwrap();
    for rx in [&mut whole, &mut keys] {
        assert!(matches!(next_event(rx).await, Event::Applied(_)));
    }
    assert!(apps.delete("a").await.unwrap());
    let deleted_at = match next_event(&mut whole).await {
        Event::Deleted(a) => {
            assert_eq!(a.spec.instances, App::test("a").spec.instances);
            a.metadata.resource_version.unwrap().parse::<i64>().unwrap()
        }
        other => panic!("expected the deleted record, got {other:?}"),
    };
    match next_event(&mut keys).await {
        Event::Removed { key, revision } => {
            assert_eq!(key, "a");
            assert_eq!(revision, deleted_at);
        }
        other => panic!("expected the deleted key, got {other:?}"),
    }
    token.cancel();
}

fn node(name: &str) -> Node {
    Node::new(
        name,
        NodeSpec {
            hostname: name.into(),
            address: "http://127.0.0.1:1".into(),
            capacity: Resources::new(1.0, 1.0, 1.0),
            ports: vec![PortRange { begin: 1, end: 2 }],
            attributes: Default::default(),
            reservations: Default::default(),
        },
    )
}

/// A node record bound to a lease granted and kept alive on `terms` until `token` is cancelled.
async fn node_on_lease(
    h: &TestEtcd,
    nodes: &Api<Node>,
    name: &str,
    terms: Terms,
    token: &CancellationToken,
) -> Lease {
    let lease = Lease::grant(&h.client, terms, token.clone()).await.unwrap();
    nodes
        .create_with_lease(&node(name), Some(lease.id))
        .await
        .unwrap();
    lease
}

/// Returns once `at` has passed (a lease's records are then checked to have outlived it).
async fn wait_until(at: Instant, what: &str) {
    let limit = at.saturating_duration_since(Instant::now()) + Duration::from_secs(2);
    eventually(limit, what, || async { Instant::now() > at }).await;
}

#[tokio::test]
async fn records_bound_to_a_lease_vanish_when_it_expires() {
    let h = harness().await;
    let nodes: Api<Node> = Api::new(&h.client);

    // An unrenewed lease expires on its own.
    let lease = h.client.etcd().lease_grant(2, None).await.unwrap().id();
    nodes
        .create_with_lease(&node("lonely"), Some(lease))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(15),
        "the unrenewed lease to expire",
        || async { nodes.get("lonely").await.unwrap().is_none() },
    )
    .await;

    // A kept-alive lease outlives several TTLs, and is revoked when its holder stops.
    let token = CancellationToken::new();
    let terms = Terms::thirds(Duration::from_secs(2));
    let kept = node_on_lease(&h, &nodes, "kept", terms, &token).await;
    let outlived = Instant::now() + Duration::from_secs(6);
    wait_until(outlived, "three TTLs to pass").await;
    assert!(
        nodes.get("kept").await.unwrap().is_some(),
        "a renewed lease keeps its records"
    );
    assert!(!kept.is_lost());
    token.cancel();
    eventually(
        Duration::from_secs(10),
        "the revoked lease's record to go",
        || async { nodes.get("kept").await.unwrap().is_none() },
    )
    .await;
}

/// A large cluster's node renews once per period and lives on the grace between its renewals
/// (`Terms` other than thirds): renewed every 4 s, a 6 s lease runs down to its last two
/// seconds before each renewal (renewed every third, it would never go below 4 s), and it
/// holds its record over several renewals all the same.
#[tokio::test]
async fn a_lease_renewed_once_per_period_lives_on_its_grace() {
    let h = harness().await;
    let nodes: Api<Node> = Api::new(&h.client);
    let token = CancellationToken::new();
    let terms = Terms {
        ttl: Duration::from_secs(6),
        renew_every: Duration::from_secs(4),
    };
    let lease = node_on_lease(&h, &nodes, "sparse", terms, &token).await;
    let started = Instant::now();
    eventually(
        Duration::from_secs(12),
        "the lease to run down to 2 s or less before a renewal",
        || async {
            let left = h.client.leases().time_to_live(lease.id, None).await;
            left.is_ok_and(|l| (1..=2).contains(&l.ttl()))
        },
    )
    .await;
    wait_until(
        started + Duration::from_secs(13),
        "three renewal periods to pass",
    )
    .await;
    assert!(
        nodes.get("sparse").await.unwrap().is_some(),
        "renewed once per period, the lease keeps its record"
    );
    assert!(!lease.is_lost());
    token.cancel();
}

#[tokio::test]
async fn controller_reconciles_every_change() {
    let h = harness().await;
    let apps: Api<App> = Api::new(&h.client);
    let token = CancellationToken::new();
    let reflector = Reflector::start(apps.clone(), "", token.clone());
    let controller = Controller::new(&reflector, token.clone());
    let reconcile = |app: Arc<App>, api: Arc<Api<App>>| async move {
        let name = app.metadata.name.clone().unwrap_or_default();
        let status = AppStatus {
            observed_generation: app.metadata.generation.unwrap_or(0),
            ..Default::default()
        };
        api.update_status(&name, status).await?;
        Ok::<_, pacer_runtime::Error>(Action::await_change())
    };
    let run = tokio::spawn(controller.run(
        reconcile,
        |_, _, _| Action::await_change(),
        Arc::new(apps.clone()),
    ));

    apps.create(&App::test("web")).await.unwrap();
    let observed = |g: i64| {
        let apps = apps.clone();
        async move {
            apps.get("web")
                .await
                .unwrap()
                .and_then(|a| a.status)
                .is_some_and(|s| s.observed_generation == g)
        }
    };
    eventually(Duration::from_secs(10), "generation 1 observed", || {
        observed(1)
    })
    .await;
    apps.modify("web", |a| {
        a.metadata.generation = Some(2);
        true
    })
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "generation 2 observed", || {
        observed(2)
    })
    .await;
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("controller stops when cancelled")
        .unwrap();
}

/// Every watch of a client shares one etcd stream: each still gets only its own keys, and
/// dropping some leaves the others working.
#[tokio::test]
async fn watches_share_one_stream_and_each_sees_only_its_own_keys() {
    let h = harness().await;
    let mut etcd = h.client.etcd();
    let mut watches: Vec<_> = (0..40)
        .map(|i| {
            let options = etcd_client::WatchOptions::new().with_prefix();
            h.client.watch(format!("/mux/{i}/"), options)
        })
        .collect();
    // Every watch confirmed before anything is written.
    for w in watches.iter_mut() {
        let created = tokio::time::timeout(Duration::from_secs(10), w.message())
            .await
            .expect("created within 10 s")
            .expect("no error")
            .expect("a response");
        assert!(created.created());
    }
    async fn next_key(w: &mut pacer_runtime::watch_mux::Watch) -> String {
        loop {
            let resp = tokio::time::timeout(Duration::from_secs(10), w.message())
                .await
                .expect("an event within 10 s")
                .expect("no error")
                .expect("a response");
            if let Some(kv) = resp.events().first().and_then(|e| e.kv()) {
                return String::from_utf8_lossy(kv.key()).into_owned();
            }
        }
    }
    for i in (0..40).rev() {
        etcd.put(format!("/mux/{i}/a"), "x", None).await.unwrap();
    }
    for (i, w) in watches.iter_mut().enumerate() {
        assert_eq!(next_key(w).await, format!("/mux/{i}/a"));
    }
    // Half of them go; the rest carry on.
    let kept: Vec<_> = watches
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .collect();
    for i in 0..40 {
        etcd.put(format!("/mux/{i}/b"), "y", None).await.unwrap();
    }
    for (i, mut w) in kept {
        assert_eq!(next_key(&mut w).await, format!("/mux/{i}/b"));
    }
}

/// Warnings logged by the code under test whose message is `message`, counted by a layer of
/// the test's own (this test binary runs this test alone: nextest gives each its process).
#[derive(Clone, Default)]
struct Warnings(Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() != tracing::Level::WARN {
            return;
        }
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

#[tokio::test]
async fn a_reconcile_that_keeps_failing_is_said_once_with_its_key() {
    use tracing_subscriber::prelude::*;
    let warnings = Warnings::default();
    tracing_subscriber::registry()
        .with(warnings.clone())
        .try_init()
        .expect("the only subscriber of this process");
    let h = harness().await;
    let apps: Api<App> = Api::new(&h.client);
    let token = CancellationToken::new();
    let reflector = Reflector::start(apps.clone(), "", token.clone());
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reconcile = |_: Arc<App>, attempts: Arc<std::sync::atomic::AtomicUsize>| async move {
        attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err::<Action, _>("the step fails")
    };
    // The policy of the job controllers: look again after a while (here at once).
    let policy = |_, _: &&str, _| Action::requeue(Duration::from_millis(5));
    let run = tokio::spawn(Controller::new(&reflector, token.clone()).run(
        reconcile,
        policy,
        attempts.clone(),
    ));
    apps.create(&App::test("web")).await.unwrap();
    let tried = |n| {
        let attempts = attempts.clone();
        async move { attempts.load(std::sync::atomic::Ordering::SeqCst) >= n }
    };
    eventually(Duration::from_secs(10), "20 failed reconciles", || {
        tried(20)
    })
    .await;
    let said = warnings.0.lock().unwrap().clone();
    assert_eq!(said.len(), 1, "once, not per failure: {said:?}");
    assert!(
        said[0].contains("key=web") && said[0].contains("the step fails"),
        "{}",
        said[0]
    );
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
}

/// A reconcile that panics does not wedge its key: the panic is caught and counted, the key
/// is retried with backoff and reconciled once the panic stops, and other keys carry on.
#[tokio::test]
async fn a_panicking_reconcile_is_retried_and_wedges_nothing() {
    let h = harness().await;
    let apps: Api<App> = Api::new(&h.client);
    let token = CancellationToken::new();
    let reflector = Reflector::start(apps.clone(), "", token.clone());
    let controller = Controller::new(&reflector, token.clone());
    let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let before = pacer_runtime::controller::panics_caught();
    let reconcile = {
        let attempts = attempts.clone();
        move |app: Arc<App>, api: Arc<Api<App>>| {
            let attempts = attempts.clone();
            async move {
                let name = app.metadata.name.clone().unwrap_or_default();
                if name == "bad" && attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                    panic!("a user value this reconcile could not take");
                }
                let status = AppStatus {
                    observed_generation: app.metadata.generation.unwrap_or(0),
                    ..Default::default()
                };
                api.update_status(&name, status).await?;
                Ok::<_, pacer_runtime::Error>(Action::await_change())
            }
        }
    };
    let run = tokio::spawn(controller.run(
        reconcile,
        |_, _, _| Action::await_change(),
        Arc::new(apps.clone()),
    ));
    apps.create(&App::test("bad")).await.unwrap();
    apps.create(&App::test("good")).await.unwrap();
    let observed = |name: &'static str| {
        let apps = apps.clone();
        async move {
            apps.get(name)
                .await
                .unwrap()
                .and_then(|a| a.status)
                .is_some()
        }
    };
    eventually(Duration::from_secs(10), "the good app reconciled", || {
        observed("good")
    })
    .await;
    eventually(
        Duration::from_secs(20),
        "the bad app reconciled after two panics",
        || observed("bad"),
    )
    .await;
    // Two panics, then a success (and maybe one more for its own status write).
    assert!(attempts.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    assert!(pacer_runtime::controller::panics_caught() >= before + 2);
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("controller stops when cancelled")
        .unwrap();
}
