//! The broker's message and consumer counts of the shared queues, read with
//! a passive `queue.declare` (which creates nothing and changes nothing) on
//! a channel of its own, for `GET /metrics`.

use super::publisher::ChanEvents;
use super::{Link, RabbitBus};
use crate::bus::QueueDepth;
use amqprs::channel::QueueDeclareArguments;
use std::time::Duration;

/// Most regions whose jobs queues a scrape asks for.
const MAX_REGIONS: usize = 64;

impl RabbitBus {
    /// Each shared queue's counts, and those of `regions`' jobs queues that
    /// exist, or `None` when not connected, when the broker does not answer
    /// within `within`, or on any refusal of a shared queue (a queue
    /// deleted by hand closes the channel). Never waits for a connection.
    pub(in crate::bus) async fn depths(
        &self,
        within: Duration,
        regions: &[String],
    ) -> Option<Vec<QueueDepth>> {
        let session = match &*self.link.borrow() {
            Link::Up(s) => std::sync::Arc::clone(s),
            Link::Down | Link::Closed => return None,
        };
        let n = &self.names;
        let dead_max = u64::try_from(super::connection::DEAD_MAX_LENGTH).ok();
        let results_max = u64::try_from(self.opts.results_max_messages()).ok();
        let queues = [
            ("jobs", n.jobs.as_str(), None),
            ("results", n.results.as_str(), results_max),
            ("votes", n.votes.as_str(), results_max),
            ("dead", n.dead.as_str(), dead_max),
        ];
        let ask = async {
            let ch = session.conn.open_channel(None).await.ok()?;
            ch.register_callback(ChanEvents::plain("queue depths"))
                .await
                .ok()?;
            let mut out = Vec::with_capacity(queues.len());
            for (queue, name, capacity) in queues {
                let declared = ch
                    .queue_declare(QueueDeclareArguments::new(name).passive(true).finish())
                    .await;
                let Ok(Some((_, messages, consumers))) = declared else {
                    // The channel is closed by a refusal; the drop below
                    // has nothing left to close.
                    return None;
                };
                out.push(QueueDepth {
                    queue: queue.into(),
                    messages: u64::from(messages),
                    consumers: u64::from(consumers),
                    capacity,
                });
            }
            // A region's queue exists once a worker or a job for it came:
            // one that does not is left out. Its refusal closes the
            // channel, so the next region gets a new one.
            let mut ch = Some(ch);
            for region in regions.iter().take(MAX_REGIONS) {
                let channel = match ch.take() {
                    Some(open) if open.is_open() => open,
                    _ => {
                        let fresh = session.conn.open_channel(None).await.ok()?;
                        fresh
                            .register_callback(ChanEvents::plain("queue depths"))
                            .await
                            .ok()?;
                        fresh
                    }
                };
                let name = self.names.region_jobs(region);
                if let Ok(Some((_, messages, consumers))) = channel
                    .queue_declare(QueueDeclareArguments::new(&name).passive(true).finish())
                    .await
                {
                    out.push(QueueDepth {
                        queue: format!("jobs.{region}").into(),
                        messages: u64::from(messages),
                        consumers: u64::from(consumers),
                        capacity: None,
                    });
                }
                ch = Some(channel);
            }
            // Dropping the channel would close it too, but in a task of
            // its own; closing here keeps the broker's channel count flat
            // under a scrape storm.
            if let Some(ch) = ch
                && ch.is_open()
            {
                let _ = ch.close().await;
            }
            Some(out)
        };
        tokio::time::timeout(within, ask).await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Capacities, RabbitOptions};
    use super::*;

    #[tokio::test]
    async fn a_bus_that_never_connected_has_no_depths_and_does_not_wait() {
        let caps = Capacities {
            jobs: 1,
            results: 1,
            events: 1,
            schedule: 1,
        };
        let bus = RabbitBus::new(RabbitOptions::new("amqp://127.0.0.1:1/", "p", 1, 1, caps))
            .expect("a usable URL");
        let started = std::time::Instant::now();
        assert_eq!(bus.depths(Duration::from_secs(5), &[]).await, None);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
