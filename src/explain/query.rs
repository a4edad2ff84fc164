//! `explain` over HTTP: the request as a query string (the proxy's admin `GET /explain`, and
//! `corsgate explain --proxy` as its client) and the answer as JSON.
//!
//! Query parameters: `host` (required), `path` (default `/`), `method` (default `GET`),
//! `origin`, `header` (repeatable: `name` or `name: value`), `credentials` and
//! `privateNetwork` (`true` or `1`).

use super::{Explanation, Request, Verdict};

/// Longest query accepted: a browser request head is smaller than this.
pub const MAX_QUERY: usize = 16 * 1024;

/// Why a query is not an explainable request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(
        "missing host: add host=<the API's host name>, e.g. /explain?host=api.example.com&origin=https://app.example.com"
    )]
    MissingHost,
    #[error("the query is longer than {MAX_QUERY} bytes")]
    TooLong,
    #[error(
        "unknown parameter {0:?}: use host, path, method, origin, header, credentials or privateNetwork"
    )]
    Unknown(String),
    #[error("{name}={value:?} is not a boolean: use true or false")]
    NotBool { name: &'static str, value: String },
}

fn boolean(name: &'static str, value: &str) -> Result<bool, QueryError> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(QueryError::NotBool {
            name,
            value: value.chars().take(32).collect(),
        }),
    }
}

impl Request {
    /// Parses `host=…&path=…&method=…&origin=…&header=…` (percent-encoded).
    pub fn from_query(query: &str) -> Result<Request, QueryError> {
        if query.len() > MAX_QUERY {
            return Err(QueryError::TooLong);
        }
        let mut req = Request {
            host: String::new(),
            path: "/".into(),
            method: "GET".into(),
            origin: None,
            headers: Vec::new(),
            credentials: false,
            private_network: false,
        };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "host" => req.host = v.into_owned(),
                "path" => req.path = v.into_owned(),
                "method" => req.method = v.into_owned(),
                "origin" => req.origin = Some(v.into_owned()),
                "header" => req.headers.push(v.into_owned()),
                "credentials" => req.credentials = boolean("credentials", &v)?,
                "privateNetwork" => req.private_network = boolean("privateNetwork", &v)?,
                other => return Err(QueryError::Unknown(other.chars().take(32).collect())),
            }
        }
        if req.host.is_empty() {
            return Err(QueryError::MissingHost);
        }
        Ok(req)
    }

    /// The query string `from_query` reads back.
    pub fn to_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("host", &self.host)
            .append_pair("path", &self.path)
            .append_pair("method", &self.method);
        if let Some(o) = &self.origin {
            q.append_pair("origin", o);
        }
        for h in &self.headers {
            q.append_pair("header", h);
        }
        if self.credentials {
            q.append_pair("credentials", "true");
        }
        if self.private_network {
            q.append_pair("privateNetwork", "true");
        }
        q.finish()
    }
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Blocked => "blocked",
            Verdict::NotApplicable => "not-applicable",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        [Verdict::Allowed, Verdict::Blocked, Verdict::NotApplicable]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

impl Explanation {
    /// `{version, verdict, policy, reason, steps: [{step, lines}], text}`: each step is a
    /// block of the text (`route`, `preflight`, `verdict`…) with its lines.
    pub fn to_json(&self) -> serde_json::Value {
        let mut steps: Vec<(String, Vec<String>)> = Vec::new();
        for line in self.text.lines() {
            match (line.starts_with(' '), steps.last_mut()) {
                (true, Some((_, lines))) => lines.push(line.trim().to_string()),
                _ => {
                    let (step, rest) = line.split_once(' ').unwrap_or((line, ""));
                    steps.push((step.to_string(), vec![rest.trim().to_string()]));
                }
            }
        }
        serde_json::json!({
            "version": self.version,
            "verdict": self.verdict.as_str(),
            "policy": self.policy,
            "reason": self.reason,
            "steps": steps
                .into_iter()
                .map(|(step, lines)| serde_json::json!({"step": step, "lines": lines}))
                .collect::<Vec<_>>(),
            "text": self.text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trips_and_names_what_is_wrong() {
        let req = Request {
            host: "api.example.com".into(),
            path: "/v1/cart?x=1".into(),
            method: "PUT".into(),
            origin: Some("https://app.example.com".into()),
            headers: vec!["x-custom".into(), "content-type: application/json".into()],
            credentials: true,
            private_network: false,
        };
        let back = Request::from_query(&req.to_query()).expect("parses");
        assert_eq!(
            (
                back.host,
                back.path,
                back.method,
                back.origin,
                back.headers,
                back.credentials,
                back.private_network
            ),
            (
                req.host,
                req.path,
                req.method,
                req.origin,
                req.headers,
                true,
                false
            )
        );
        assert_eq!(
            Request::from_query("origin=https://a.test").err(),
            Some(QueryError::MissingHost)
        );
        assert!(matches!(
            Request::from_query("host=a&bogus=1"),
            Err(QueryError::Unknown(k)) if k == "bogus"
        ));
        assert!(matches!(
            Request::from_query("host=a&credentials=maybe"),
            Err(QueryError::NotBool {
                name: "credentials",
                ..
            })
        ));
        assert_eq!(
            Request::from_query(&"host=a&path=".repeat(MAX_QUERY)).err(),
            Some(QueryError::TooLong)
        );
    }
}
