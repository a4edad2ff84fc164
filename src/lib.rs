//! corsgate: CORS at the edge of a Kubernetes cluster.
//!
//! Layers, each depending only on those above it:
//! - `cors`: the pure engine (origins, classification, decisions, headers). No I/O.
//! - `policy`: the `CorsPolicy` resource types and validation.
//! - `config`: policy → engine compilation, the immutable snapshot and routing, file loading,
//!   and `finish` (the headers every response of a matched policy gets).
//! - `serve`: the one HTTP serving loop (bind, accept, TLS, drain), `reply` and the admin
//!   router. Knows nothing of the modules below.
//! - `proxy`: the hyper edge proxy and its admin endpoints.
//! - `webhook`: the validating admission webhook (review, HTTPS, certificates).
//! - `explain`, `demo`: the `corsgate explain` and `corsgate demo` commands.
//! - `controller`: the operator (reconcile, status, config stream, leader election).
//! - `cli`: the command line (`corsgate <subcommand>`) and each subcommand's wiring.
//! - `interop`: `corsgate import` / `corsgate export` (ingress-nginx, Gateway API, CloudFront).
//!
//! `main.rs` only parses the command line and calls `cli::run`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod controller;
pub mod cors;
pub mod demo;
pub mod explain;
pub mod interop;
pub mod policy;
pub mod proxy;
pub mod serve;
pub mod webhook;
