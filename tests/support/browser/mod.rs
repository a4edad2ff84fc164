//! What the Chromium end-to-end suite (`tests/browser/main.rs`) stands on: the browser driven
//! through chromedriver (`chromium`), the processes it starts and always stops (`process`),
//! the in-test upstream and page servers (`servers`) and a plain HTTP/1.1 client for
//! checking headers a page cannot read (`http`).
//!
//! Everything listens on and talks to 127.0.0.1 only. Every process is killed by PID when
//! its guard drops, so a failing or panicking test leaves nothing behind, and every wait
//! has a deadline.

pub mod chromium;
pub mod http;
pub mod process;
pub mod servers;
