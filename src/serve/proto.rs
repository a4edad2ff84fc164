//! Which HTTP a connection speaks, and the connection builders for each.
//!
//! Most connections announce their protocol before the first request: TLS by ALPN, and a
//! cleartext connection by its first bytes (the HTTP/2 preface, or anything else). Those are
//! served by hyper's HTTP/1.1 or HTTP/2 connection directly; only a connection that is still
//! ambiguous (a partial preface, no ALPN) goes through hyper-util's sniffing `auto`
//! connection. The direct path costs less per request (no rewind layer and protocol
//! dispatch on every read) and less memory per idle connection (issue 14).

use std::future::Future;
use std::pin::Pin;

use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;

use super::Listener;
use super::conn::MIN_HEADER_BYTES;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection speaks, as far as is known before serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
    /// Not known yet: let hyper-util read and decide.
    Sniff,
}

impl Proto {
    /// From the first bytes of a cleartext connection (a peek: they stay unread).
    pub fn sniff(first: &[u8]) -> Proto {
        if first.len() >= H2_PREFACE.len() {
            if first.starts_with(H2_PREFACE) {
                Proto::Http2
            } else {
                Proto::Http1
            }
        } else if H2_PREFACE.starts_with(first) {
            Proto::Sniff
        } else {
            Proto::Http1
        }
    }

    /// From the protocol TLS negotiated by ALPN (`None`: the client offered none).
    pub fn from_alpn(alpn: Option<&[u8]>) -> Proto {
        match alpn {
            Some(b"h2") => Proto::Http2,
            Some(b"http/1.1") => Proto::Http1,
            _ => Proto::Sniff,
        }
    }
}

/// The builders of one listener, each with the listener's limits.
pub struct Builders {
    pub http1: http1::Builder,
    pub http2: http2::Builder<TokioExecutor>,
    pub auto: auto::Builder<TokioExecutor>,
}

impl Builders {
    pub fn new(how: &Listener) -> Builders {
        let limits = &how.conn;
        // hyper answers 431 when a request head does not fit (it needs at least 8 KiB).
        let max_buf = limits.max_header_bytes.max(MIN_HEADER_BYTES);
        let max_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
        let mut h1 = http1::Builder::new();
        // The listener's sweeper applies the header timeout to these connections (`sweep`):
        // hyper's own would set a boxed timer for every request and drop it after the head.
        h1.header_read_timeout(None)
            .max_buf_size(max_buf)
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .keep_alive_interval(limits.h2_keepalive_interval)
            .keep_alive_timeout(limits.h2_keepalive_timeout)
            .max_concurrent_streams(how.h2_max_concurrent_streams)
            .max_header_list_size(max_list);
        // Rare (a partial preface, or TLS without ALPN): hyper's header timer stays on, as the
        // sweeper does not know whether such a connection turns out HTTP/1.1.
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(how.header_timeout)
            .max_buf_size(max_buf)
            .keep_alive(true);
        auto.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.h2_keepalive_interval)
            .keep_alive_timeout(limits.h2_keepalive_timeout)
            .max_concurrent_streams(how.h2_max_concurrent_streams)
            .max_header_list_size(max_list);
        Builders {
            http1: h1,
            http2: h2,
            auto,
        }
    }
}

/// A connection future that can be asked to finish gracefully: hyper's HTTP/1.1 connection
/// with upgrades, its HTTP/2 connection, and hyper-util's sniffing one.
pub trait Graceful: Future<Output = Result<(), Self::Error>> {
    type Error: Into<Box<dyn std::error::Error + Send + Sync>>;
    /// Stop after the requests in flight (HTTP/2: GOAWAY).
    fn graceful(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for http1::UpgradeableConnection<I, S>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Error = hyper::Error;
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> Graceful for http2::Connection<I, S, TokioExecutor>
where
    http2::Connection<I, S, TokioExecutor>: GracefulConnection<Error = hyper::Error>,
    S: HttpService<Incoming, ResBody = B>,
    B: Body + 'static,
{
    type Error = hyper::Error;
    fn graceful(self: Pin<&mut Self>) {
        GracefulConnection::graceful_shutdown(self);
    }
}

impl<I, S, B> Graceful for auto::UpgradeableConnection<'_, I, S, TokioExecutor>
where
    S: HttpService<Incoming, ResBody = B>,
    B: Body + 'static,
    Self: GracefulConnection<Error = Box<dyn std::error::Error + Send + Sync>>,
{
    type Error = Box<dyn std::error::Error + Send + Sync>;
    fn graceful(self: Pin<&mut Self>) {
        GracefulConnection::graceful_shutdown(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_tell_http2_from_http1() {
        assert_eq!(Proto::sniff(H2_PREFACE), Proto::Http2);
        assert_eq!(
            Proto::sniff(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12"),
            Proto::Http2
        );
        assert_eq!(
            Proto::sniff(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"),
            Proto::Http1
        );
        assert_eq!(Proto::sniff(b"G"), Proto::Http1);
        assert_eq!(Proto::sniff(b"POST /x HTTP/1.1\r\n"), Proto::Http1);
        // A method named PRI on HTTP/1.1 differs from the preface at its 9th byte.
        assert_eq!(
            Proto::sniff(b"PRI * HTTP/1.1\r\nhost: a\r\n\r\n"),
            Proto::Http1
        );
        // Too few bytes to tell: hyper-util reads on and decides.
        assert_eq!(Proto::sniff(b"P"), Proto::Sniff);
        assert_eq!(Proto::sniff(b"PRI * HTTP/2"), Proto::Sniff);
    }

    #[test]
    fn alpn_decides_over_tls() {
        assert_eq!(Proto::from_alpn(Some(b"h2")), Proto::Http2);
        assert_eq!(Proto::from_alpn(Some(b"http/1.1")), Proto::Http1);
        assert_eq!(Proto::from_alpn(None), Proto::Sniff);
    }
}
