//! The last step of every response of a matched policy, in one place for the proxy (each of
//! its exits: answered preflight, rejection, upstream response, the edge's own error),
//! `corsgate explain` and the tests, so what explain prints cannot drift from what the
//! proxy sends: the decision's CORS headers, then `responseHeaders`.

use http::HeaderMap;

use super::CompiledPolicy;
use crate::cors::{Action, Decision};

/// Finishes a response's headers for `policy`. `decision`: the CORS decision to enforce, or
/// `None` when CORS stays out of it (a Shadow policy forwards untouched by CORS, but
/// `responseHeaders` are not CORS and still apply). A preflight answered at the edge
/// (`Action::Respond`) gets the preflight headers; any other response the actual-response
/// headers, merged with what the upstream sent.
pub fn finish(policy: &CompiledPolicy, decision: Option<&Decision<'_>>, headers: &mut HeaderMap) {
    match decision {
        Some(d) if d.action == Action::Respond => d.write_preflight(headers),
        Some(d) => d.apply_to_response(headers),
        None => {}
    }
    policy.response_headers.apply(headers);
}
