//! Pure domain logic: what a service is, what a check found, how statuses change.
//!
//! Nothing in here does I/O, so all of it is unit-tested beside the code.

pub mod alert_view;
pub mod api_key;
pub mod channel;
pub mod channel_spec;
pub mod check;
pub mod check_kind;
pub mod confirm;
pub mod event;
pub mod health_log;
pub mod outbox;
pub mod plan;
pub mod push;
pub mod quorum;
pub mod region_health;
pub mod service;
pub mod status;
pub mod status_page;
pub mod time;
pub mod transition;
pub mod uptime;
pub mod validate;
pub mod window;

pub use channel::ChannelId;
pub use check::{CheckJob, CheckResult};
pub use check_kind::{CheckFields, CheckKind, CheckOptions};
pub use event::Event;
pub use service::{Service, ServiceId, ServiceSpec};
pub use status::Status;
