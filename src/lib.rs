//! healthmon: a self-hosted, distributed, real-time service health monitor.
//!
//! Data flows one way through the modules:
//! [`http`] -> [`store`] -> [`scheduler`] -> [`bus`] -> [`worker`] -> [`bus`]
//! -> [`recorder`] -> [`store`] + events -> [`http::ws`]. [`domain`] holds
//! the pure rules they share; [`app`] wires them under [`supervise`].

pub mod alert;
pub mod app;
pub mod auth;
pub mod banner;
pub mod bus;
pub mod cli;
pub mod config;
pub mod domain;
pub mod drops;
pub mod http;
pub mod keys;
pub mod logging;
pub mod maintenance;
pub mod metrics;
pub mod recorder;
pub mod scheduler;
pub mod store;
pub mod supervise;
pub mod tls;
pub mod worker;
