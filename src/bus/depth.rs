//! How full the bus's queues are, for `GET /metrics`
//! (`healthmon_queue_messages` and its siblings): the in-process channels'
//! fill, or the broker's own counts.

use super::{Backend, Bus};

/// How full one of the bus's queues is at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// Which queue: `jobs`, `results`, or with a broker `votes`, `dead`
    /// and `jobs.REGION` (a region's jobs).
    pub queue: std::borrow::Cow<'static, str>,
    /// Messages waiting in it. With a broker these are the messages ready
    /// for a consumer (not those delivered and not yet acknowledged), and a
    /// message carries up to [`super::rabbitmq::JOBS_PER_MESSAGE`] jobs or
    /// [`super::rabbitmq::RESULTS_PER_MESSAGE`] results; in-process, one
    /// message is one job or result.
    pub messages: u64,
    /// Consumers taking from it (in-process, 0 or 1).
    pub consumers: u64,
    /// Most messages it holds, where it has a bound.
    pub capacity: Option<u64>,
}

impl Bus {
    /// How full each queue is now, or `None` when the broker cannot say
    /// (not connected, or no answer within `within`). Asks the broker each
    /// time: callers that may be called often keep the answer a while
    /// (see `crate::metrics`).
    pub async fn queue_depths(&self, within: std::time::Duration) -> Option<Vec<QueueDepth>> {
        match &self.0 {
            Backend::InProcess(b) => Some(b.depths()),
            Backend::Rabbit(b) => {
                // Every region the fleet knows: listed by a service or with
                // a worker (a listed one without a worker piles up jobs).
                let now = crate::domain::time::now_ms();
                let regions: Vec<String> = self
                    .roster()
                    .read(now, |s| s.view(now))
                    .into_iter()
                    .map(|r| r.name)
                    .collect();
                b.depths(within, &regions).await
            }
        }
    }
}
