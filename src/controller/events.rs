//! Events on resources: kube-runtime's `Recorder`, with the memory of its cache bounded. The
//! reconcile's last step publishes through [`EventRecorder`].
//!
//! kube-runtime's `Recorder` remembers every event it published for six minutes, so that a repeat
//! (same type, reason, action and object reference) becomes a series (a count on the first event)
//! rather than a new event. Each remembered event is a whole `Event` object next to its key, well
//! over a kilobyte in the cache's table, and a fleet that converges at once publishes a couple of
//! events per resource within those six minutes: at ten thousand resources that cache alone was
//! about half of the operator's peak heap. kube-runtime offers no bound on it.
//!
//! [`EventRecorder`] hands publishes to one `Recorder` until that one has published
//! [`GENERATION`] events, then to a fresh `Recorder` (the old one, and its cache, is dropped when
//! its last publish in flight finishes). A bounded cache is what client-go's event correlator
//! does too (an LRU of 4096 events). A repeat within one generation still becomes a series; a
//! repeat across a rotation becomes a new event, as it would after a restart. Each publish costs
//! what kube-runtime's costs (it drops expired entries by scanning its cache, which here holds at
//! most [`GENERATION`] events) plus one lock and one clone of the current `Recorder`.

use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};

/// How many events one `Recorder` publishes before a fresh one takes over: the most events the
/// series cache holds (under a megabyte), whatever the size of the fleet.
pub const GENERATION: usize = 256;

/// Publishes events through kube-runtime's `Recorder`, renewed every [`GENERATION`] events.
/// Cloning shares the same recorder.
#[derive(Clone)]
pub struct EventRecorder {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    reporter: Reporter,
    /// Publishes per `Recorder` ([`GENERATION`] but in tests).
    generation: usize,
    current: Mutex<Current>,
}

struct Current {
    recorder: Recorder,
    published: usize,
}

impl EventRecorder {
    /// A recorder that publishes as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self::renewed_every(client, reporter, GENERATION)
    }

    /// A recorder whose `Recorder` is renewed every `generation` publishes.
    fn renewed_every(client: Client, reporter: Reporter, generation: usize) -> Self {
        let recorder = Recorder::new(client.clone(), reporter.clone());
        EventRecorder {
            inner: Arc::new(Inner {
                client,
                reporter,
                generation,
                current: Mutex::new(Current {
                    recorder,
                    published: 0,
                }),
            }),
        }
    }

    /// Publishes `event` on the object `reference` points to (see kube-runtime's
    /// `Recorder::publish`).
    ///
    /// # Errors
    ///
    /// The API server's refusal of the event.
    pub async fn publish(
        &self,
        event: &Event,
        reference: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let recorder = self.next();
        recorder.publish(event, reference).await
    }

    /// The `Recorder` for one more publish: the current one, or a fresh one once the current one
    /// has published [`GENERATION`] events.
    fn next(&self) -> Recorder {
        // A panic while holding this lock cannot leave `Current` inconsistent (a counter and a
        // replaced value), so a poisoned lock is still usable.
        let mut current = self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if current.published >= self.inner.generation {
            *current = Current {
                recorder: Recorder::new(self.inner.client.clone(), self.inner.reporter.clone()),
                published: 0,
            };
        }
        current.published += 1;
        current.recorder.clone()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use kube::api::{Api, ListParams, PostParams};
    use kube::runtime::events::EventType;

    use super::*;

    /// kube-sandbox's router as the client's transport, with the namespace `default`.
    async fn in_memory_cluster() -> Client {
        let client = Client::new(
            kube_sandbox::server::in_memory_router(&kube_sandbox::SandboxConfig::default()),
            "default",
        );
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        client
    }

    fn event(reason: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(format!("{reason} happened")),
            action: "Observe".into(),
            secondary: None,
        }
    }

    /// (reason, series count) of every event in the namespace, sorted.
    async fn events(client: &Client) -> Vec<(String, i32)> {
        let mut all: Vec<(String, i32)> = Api::<K8sEvent>::namespaced(client.clone(), "default")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| {
                (
                    e.reason.unwrap_or_default(),
                    e.series.map_or(1, |s| s.count),
                )
            })
            .collect();
        all.sort();
        all
    }

    #[tokio::test]
    async fn a_repeat_is_a_series_within_a_generation_and_a_new_event_after_a_renewal() {
        let client = in_memory_cluster().await;
        let reference = ObjectReference {
            api_version: Some("ecspower.dev/v1alpha1".into()),
            kind: Some("EcsInstancePower".into()),
            name: Some("r".into()),
            namespace: Some("default".into()),
            uid: Some("0b6f5d4e-1111-2222-3333-444455556666".into()),
            resource_version: Some("7".into()),
            field_path: None,
        };
        let recorder = EventRecorder::renewed_every(
            client.clone(),
            Reporter {
                controller: "test".into(),
                instance: None,
            },
            3,
        );

        // One generation: the repeat of A is counted on the first A.
        for reason in ["A", "A", "B"] {
            recorder.publish(&event(reason), &reference).await.unwrap();
        }
        assert_eq!(
            events(&client).await,
            [("A".to_string(), 2), ("B".to_string(), 1)]
        );

        // The fourth publish goes to a fresh Recorder: A again is a new event, and its repeat a
        // series on that one.
        for reason in ["A", "A"] {
            recorder.publish(&event(reason), &reference).await.unwrap();
        }
        assert_eq!(
            events(&client).await,
            [
                ("A".to_string(), 2),
                ("A".to_string(), 2),
                ("B".to_string(), 1)
            ]
        );
    }
}
