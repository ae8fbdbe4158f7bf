//! `auditsync` as a library: the stock CLI, its config and its HTTP service, so that a
//! third party's binary is the stock one plus their own plugins.
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     // my_sink::link();   // keep the plugin crate linked: it registers itself
//!     auditsync::main()
//! }
//! ```
//!
//! [`main`] links the sinks, formatters and stores of this crate's enabled Cargo features;
//! whatever else the binary linked (a sink registered with `auditsync_core::inventory`,
//! with its URL schemes) is found by the same registries, by `type` in the config and by
//! scheme in URLs, in every command.

pub mod app;
mod cli;
pub mod config;
mod endpoints;
mod exports;
mod http;
mod metrics;
mod own_events;
pub mod plugins;
mod progress;
mod range_export;
mod schedules;
mod tenant_status;
mod tenant_watch;

pub use app::App;
pub use cli::main;
pub use config::Config;
pub use http::serve_on;
