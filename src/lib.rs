//! The kokoro application: the command line, configuration, the front doors
//! (HTTP API, Discord) and telemetry wiring. The game and the
//! actor runtime live in the `actors` crate; this crate only connects them
//! to the outside world.

pub mod bench;
pub mod cli;
pub mod cluster;
pub mod comfyui;
pub mod discord;
pub mod doors;
pub mod http;
pub mod import;
pub mod loadtest;
pub mod notices;
pub mod ops;
#[cfg(feature = "otel")]
pub mod otel;
pub mod payments;
pub mod render;
pub mod results;
pub mod scratch;
pub mod serve;
pub mod settings;
pub mod telegram;
pub mod telemetry;
pub mod uploads;
