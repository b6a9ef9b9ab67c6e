//! The event bus: what serving and other subscribers react to.
//!
//! [`EventBus`] is the seam; [`LocalBus`] (a tokio broadcast channel) is
//! the in-process implementation. It lives with the store because what it
//! carries are state changes the store made: the control plane publishes,
//! serving subscribes, and neither depends on the other. Another process
//! learns of registry moves without a bus by polling the store's model
//! generation (the NEW_MODEL_AVAILABLE flag): the control plane's tick
//! does that and republishes moves made elsewhere (the CLI, another
//! node), so a Postgres NOTIFY or Redis bus can replace the poll later
//! without changing subscribers.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Event {
    /// An alias (`champion`) now points at a newly promoted version.
    ModelPromoted {
        /// Tenant id.
        tenant: String,
        /// The version now served.
        version: String,
        /// The alias moved.
        alias: String,
        /// The version it replaced.
        previous: Option<String>,
    },
    /// The champion was rolled back to an earlier version, or demoted.
    ModelRolledBack {
        /// Tenant id.
        tenant: String,
        /// The version now served (`None`: the base model).
        version: Option<String>,
        /// The version taken out.
        from: String,
        /// The alias moved.
        alias: String,
    },
    /// A tenant's entity dictionary changed (`DICTIONARY_UPDATED`): serving
    /// reloads it before the tenant's next generation.
    DictionaryUpdated {
        /// Tenant id.
        tenant: String,
        /// Entries now.
        entries: usize,
    },
    /// A job changed state.
    JobStateChanged {
        /// Tenant id.
        tenant: String,
        /// The job.
        job: String,
        /// Its new status.
        status: String,
    },
}

/// Publishes events to subscribers.
pub trait EventBus: Send + Sync {
    /// Sends an event to every current subscriber (none: dropped).
    fn publish(&self, event: Event);
    /// A new subscription; it sees events published from now on. A
    /// subscriber that falls behind by more than the buffer gets
    /// `Lagged` and should re-read state from the store.
    fn subscribe(&self) -> broadcast::Receiver<Event>;
}

/// The in-process bus.
#[derive(Debug, Clone)]
pub struct LocalBus {
    tx: broadcast::Sender<Event>,
}

impl LocalBus {
    /// A bus buffering up to `capacity` events per subscriber.
    pub fn new(capacity: usize) -> LocalBus {
        LocalBus { tx: broadcast::channel(capacity.max(1)).0 }
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus::new(1024)
    }
}

impl EventBus for LocalBus {
    fn publish(&self, event: Event) {
        tracing::debug!(?event, "event");
        let _ = self.tx.send(event);
    }
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_see_events_after_they_subscribe() {
        let bus = LocalBus::new(4);
        bus.publish(Event::JobStateChanged {
            tenant: "early".into(),
            job: "j".into(),
            status: "queued".into(),
        });
        let mut rx = bus.subscribe();
        let e = Event::ModelPromoted {
            tenant: "t".into(),
            version: "v".into(),
            alias: "champion".into(),
            previous: None,
        };
        bus.publish(e.clone());
        assert_eq!(rx.try_recv().unwrap(), e);
        assert!(rx.try_recv().is_err());
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "MODEL_PROMOTED");
    }
}
