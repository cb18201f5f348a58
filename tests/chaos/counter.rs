//! The command center side: a persistent QoS 1 session on `dispatch/+/tasks` that records
//! every task message it receives, duplicates included.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::common::unique;

/// One received task message.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub task_id: String,
    pub target_id: String,
}

pub struct Counter {
    seen: Arc<Mutex<Vec<Delivery>>>,
    _client: AsyncClient,
    events: tokio::task::JoinHandle<()>,
}

impl Counter {
    /// Connects and subscribes once: after a broker restart the session (and with it the
    /// subscription and what was queued for it) must come back from the broker's
    /// persistence, not from a new SUBSCRIBE.
    pub async fn connect(broker: SocketAddr, prefix: &str) -> Counter {
        let mut opts = MqttOptions::new(unique("chaos-counter-"), "127.0.0.1", broker.port());
        opts.set_clean_session(false);
        opts.set_inflight(100);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(opts, 1_000);
        client
            .subscribe(format!("{prefix}dispatch/+/tasks"), QoS::AtLeastOnce)
            .await
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let events = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let body: serde_json::Value =
                            serde_json::from_slice(&p.payload).unwrap_or_default();
                        let field =
                            |name: &str| body[name].as_str().unwrap_or_default().to_string();
                        sink.lock().unwrap().push(Delivery {
                            task_id: field("task_id"),
                            target_id: field("target_id"),
                        });
                    }
                    Ok(_) => {}
                    // Reconnect back-off while the broker restarts.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
            .await
            .expect("the counter's SUBSCRIBE is acknowledged")
            .unwrap();
        Counter {
            seen,
            _client: client,
            events,
        }
    }

    /// Every task message received so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.events.abort();
    }
}
