//! `corsgate <subcommand>`: parses the command line and hands it to the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// jemalloc returns freed memory to the kernel (see `.cargo/config.toml` for its settings);
/// glibc's malloc kept the peak of a burst of connections or a reload for good (issue 14).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    corsgate::cli::run(corsgate::cli::Cli::parse())
}
