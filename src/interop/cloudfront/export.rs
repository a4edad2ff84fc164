//! Export: CorsPolicies as CloudFront response headers policies (a managed one by name when
//! the policy equals it), and a report of what CloudFront cannot say.

use super::*;

/// CorsPolicy as response headers policy configs (`create-response-headers-policy` input).
pub fn export(policies: &[Imported], report: &mut Report) -> Result<String, InteropError> {
    let mut out = Vec::new();
    for p in policies {
        let object = format!("CorsPolicy {}/{}", p.namespace, p.name);
        let raw = &p.spec;
        report.info(&object, "spec.hosts", "hosts-not-in-rhp", format!("hosts {} and paths are not part of a response headers policy: attach it to the cache behaviours that serve them", raw.hosts.join(", ")));
        if let Some(name) = managed_equivalent(raw) {
            report.info(&object, "spec", "managed-equivalent", format!("equivalent to the managed policy Managed-{name}: attach it instead of creating a copy"));
        }
        let spec = raw.with_presets();
        let c = &spec.cors;
        let mut config = Config {
            name: object_name(&format!("{}-{}", p.namespace, p.name)),
            comment: Some(format!(
                "exported by corsgate from CorsPolicy {}/{}",
                p.namespace, p.name
            )),
            ..Config::default()
        };
        let has_cors = !c.allow_origins.is_empty()
            || !c.allow_origin_patterns.is_empty()
            || !c.rules.is_empty();
        if has_cors {
            if !c.allow_origin_patterns.is_empty() {
                report.risk(
                    &object,
                    "spec.cors.allowOriginPatterns",
                    "patterns-dropped",
                    "a response headers policy takes no regular expressions for origins; dropped",
                );
            }
            if !c.rules.is_empty() {
                report.risk(&object, "spec.cors.rules", "rules-dropped", "a response headers policy has one CORS configuration for every origin: per-origin rules need an edge function; dropped");
            }
            let methods = match &c.allow_methods {
                Some(m) if m.iter().any(|x| x == "*") => vec!["ALL".to_string()],
                Some(m) => m.clone(),
                None => vec!["GET".into(), "HEAD".into(), "POST".into()],
            };
            config.cors_config = Some(Cors {
                access_control_allow_origins: Items::of(c.allow_origins.clone()),
                access_control_allow_headers: Items::of(c.allow_headers.clone()),
                access_control_allow_methods: Items::of(methods),
                access_control_allow_credentials: c.allow_credentials,
                access_control_expose_headers: if c.expose_headers.is_empty() {
                    None
                } else {
                    Some(Items::of(c.expose_headers.clone()))
                },
                access_control_max_age_sec: c.max_age_seconds.map(i64::from),
                origin_override: c.origin_override.unwrap_or(true),
            });
            if c.allow_origins.iter().any(|o| o == "null") {
                report.risk(&object, "spec.cors.allowOrigins", "origin-null", "\"null\" is written into AccessControlAllowOrigins: CloudFront then answers Origin: null, which sandboxed iframes, file: pages and some redirects send, so any site can obtain it; remove it unless that is intended");
            }
            if matches!(
                c.preflight,
                None | Some(crate::policy::PreflightMode::Respond)
            ) {
                report.warning(&object, "spec.cors.preflight", "preflight-not-answered", "corsgate answers preflights at the edge (preflight: Respond); CloudFront does not answer them itself: the cache behaviour must allow OPTIONS, the origin must answer them (CloudFront adds the headers), and if OPTIONS is cached, Origin, Access-Control-Request-Method and Access-Control-Request-Headers must be in the cache key");
            }
            report.warning(&object, "spec.cors", "vary-origin", "CloudFront adds no Vary: Origin: add Origin to the cache policy's cache key (or an origin request policy) so one origin's answer is never served to another");
            report.warning(&object, "spec.cors", "errors-without-cors", "CloudFront's own error responses (and custom error pages) may lack the CORS headers; corsgate puts them on every response");
        }
        if spec.mode == Mode::Shadow {
            report.warning(&object, "spec.mode", "shadow-dropped", "a response headers policy has no shadow mode: it applies as soon as it is attached");
        }
        if c.allow_private_network {
            report.warning(
                &object,
                "spec.cors.allowPrivateNetwork",
                "private-network-dropped",
                "CloudFront cannot answer private network preflights",
            );
        }
        if matches!(c.preflight, Some(crate::policy::PreflightMode::Forward)) {
            report.info(&object, "spec.cors.preflight", "preflight-forward", "CloudFront forwards OPTIONS to the origin when the cache behaviour allows it; the origin answers and CloudFront adds the headers");
        }
        if c.disallowed_origin == crate::policy::DisallowedOrigin::Reject {
            report.warning(&object, "spec.cors.disallowedOrigin", "disallowed-origin-forwarded", "CloudFront cannot answer 403 to a disallowed origin; it forwards without CORS headers");
        }
        if let Some(rh) = &spec.response_headers {
            if let Some(sec) = &rh.security {
                config.security_headers_config = Some(security_of(sec));
            }
            if !rh.set.is_empty() {
                config.custom_headers_config = Some(Items::of(
                    rh.set
                        .iter()
                        .map(|h| Custom {
                            header: h.name.clone(),
                            value: h.value.clone(),
                            override_: true,
                        })
                        .collect(),
                ));
            }
            if !rh.remove.is_empty() {
                config.remove_headers_config = Some(Items::of(
                    rh.remove
                        .iter()
                        .map(|h| Remove { header: h.clone() })
                        .collect(),
                ));
            }
        }
        out.push(json!({ "ResponseHeadersPolicyConfig": config }));
    }
    let value = if out.len() == 1 {
        out.remove(0)
    } else {
        serde_json::Value::Array(out)
    };
    let mut text = serde_json::to_string_pretty(&value)
        .map_err(|e| InteropError::invalid("export", e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// The managed policy a spec is exactly equivalent to, if any: presets and nothing else.
fn managed_equivalent(spec: &CorsPolicySpec) -> Option<&'static str> {
    let bare_cors = CorsSpec {
        preset: spec.cors.preset,
        ..CorsSpec::default()
    };
    if spec.cors != bare_cors || spec.mode != Mode::Enforce {
        return None;
    }
    let security = match &spec.response_headers {
        None => false,
        Some(r)
            if *r
                == (ResponseHeaders {
                    preset: Some(ResponseHeadersPreset::SecurityHeaders),
                    ..ResponseHeaders::default()
                }) =>
        {
            true
        }
        Some(_) => return None,
    };
    MANAGED
        .iter()
        .find(|(_, c, s)| *c == spec.cors.preset && *s == security && (c.is_some() || *s))
        .map(|(n, _, _)| *n)
}

fn security_of(s: &SecurityHeaders) -> Security {
    let ov = |o: Option<bool>| o.unwrap_or(true);
    Security {
        xss_protection: s.xss_protection.as_ref().map(|x| Xss {
            override_: ov(x.override_upstream),
            protection: x.protection.unwrap_or(true),
            mode_block: Some(
                x.mode_block
                    .unwrap_or(x.report_uri.is_none() && x.protection != Some(false)),
            ),
            report_uri: x.report_uri.clone(),
        }),
        frame_options: s.frame_options.as_ref().map(|f| Frame {
            override_: ov(f.override_upstream),
            frame_option: match f.value {
                Some(FrameOption::Deny) => "DENY".into(),
                _ => "SAMEORIGIN".into(),
            },
        }),
        referrer_policy: s.referrer_policy.as_ref().map(|r| Referrer {
            override_: ov(r.override_upstream),
            referrer_policy: serde_json::to_value(
                r.value
                    .unwrap_or(ReferrerPolicy::StrictOriginWhenCrossOrigin),
            )
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| "strict-origin-when-cross-origin".into()),
        }),
        content_security_policy: s.content_security_policy.as_ref().map(|p| Csp {
            override_: ov(p.override_upstream),
            content_security_policy: p.value.clone(),
        }),
        content_type_options: s.content_type_options.as_ref().map(|t| Cto {
            override_: ov(t.override_upstream),
        }),
        strict_transport_security: s.strict_transport_security.as_ref().map(|h| Hsts {
            override_: ov(h.override_upstream),
            include_subdomains: h.include_subdomains.unwrap_or(false),
            preload: h.preload.unwrap_or(false),
            access_control_max_age_sec: i64::from(h.max_age_seconds.unwrap_or(31_536_000)),
        }),
    }
}
