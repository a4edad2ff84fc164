//! Configuration: the one policy→engine conversion (`compile`), the immutable `Snapshot`
//! with its routing table and version, and loading policies from files.
//!
//! Owns: turning policies into what the proxy serves, conflict resolution, file loading
//! and watching, the TLS Secrets policies name (`certs`). Must not touch: sockets, hyper, metrics. `proxy`, `controller` and
//! `webhook` depend on this module; it depends on `policy` and `cors` only.

pub mod certs;
pub mod compile;
pub mod finish;
pub mod host;
pub mod load;
pub mod shadow;
pub mod snapshot;
pub mod watch;
pub mod wire;

#[cfg(test)]
mod preset_tests;
#[cfg(test)]
mod tests;

pub use compile::{CompiledPolicy, HeaderOps, PolicyId, SetHeader, UpstreamTarget};
pub use finish::finish;
pub use host::{Host, HostError, normalize_host, parse_host};
pub use load::{LoadError, Manifests, load_inputs, load_manifests, load_snapshot};
pub use snapshot::{
    ConflictAudience, PolicyInput, PolicyReport, Rejected, Snapshot, TlsReport, claim_order,
    conflict_message,
};
