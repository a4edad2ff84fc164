//! Presets: CloudFront's managed response-headers policies (SimpleCORS, CORS-With-Preflight,
//! SecurityHeadersPolicy) as defaults filled into a spec. `CorsPolicySpec::with_presets` is
//! the only place they are expanded; `validate` checks the expanded spec and
//! `config::compile` compiles it, so `/config` and `corsgate explain` show what a preset
//! became. A field the user sets next to a preset replaces the preset's value for that field.

use super::{
    ContentTypeOptions, CorsPolicySpec, CorsPreset, FrameOptions, PreflightMode,
    ReferrerPolicyHeader, ResponseHeadersPreset, SecurityHeaders, StrictTransportSecurity,
    XssProtection,
};

/// CORS-With-Preflight's Access-Control-Allow-Methods.
pub const CORS_WITH_PREFLIGHT_METHODS: [&str; 7] =
    ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"];

/// The typed headers of `responseHeaders.security`: each field's name in the spec and the
/// header it renders, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityHeader {
    StrictTransportSecurity,
    ContentTypeOptions,
    FrameOptions,
    ReferrerPolicy,
    ContentSecurityPolicy,
    XssProtection,
}

impl SecurityHeader {
    /// In field order.
    pub const ALL: [SecurityHeader; 6] = [
        SecurityHeader::StrictTransportSecurity,
        SecurityHeader::ContentTypeOptions,
        SecurityHeader::FrameOptions,
        SecurityHeader::ReferrerPolicy,
        SecurityHeader::ContentSecurityPolicy,
        SecurityHeader::XssProtection,
    ];

    /// The field under `responseHeaders.security`.
    pub const fn field(self) -> &'static str {
        match self {
            SecurityHeader::StrictTransportSecurity => "strictTransportSecurity",
            SecurityHeader::ContentTypeOptions => "contentTypeOptions",
            SecurityHeader::FrameOptions => "frameOptions",
            SecurityHeader::ReferrerPolicy => "referrerPolicy",
            SecurityHeader::ContentSecurityPolicy => "contentSecurityPolicy",
            SecurityHeader::XssProtection => "xssProtection",
        }
    }

    /// The response header it sets (lower case).
    pub const fn header(self) -> &'static str {
        match self {
            SecurityHeader::StrictTransportSecurity => "strict-transport-security",
            SecurityHeader::ContentTypeOptions => "x-content-type-options",
            SecurityHeader::FrameOptions => "x-frame-options",
            SecurityHeader::ReferrerPolicy => "referrer-policy",
            SecurityHeader::ContentSecurityPolicy => "content-security-policy",
            SecurityHeader::XssProtection => "x-xss-protection",
        }
    }
}

impl SecurityHeaders {
    /// Whether the field for `h` is set.
    pub fn has(&self, h: SecurityHeader) -> bool {
        match h {
            SecurityHeader::StrictTransportSecurity => self.strict_transport_security.is_some(),
            SecurityHeader::ContentTypeOptions => self.content_type_options.is_some(),
            SecurityHeader::FrameOptions => self.frame_options.is_some(),
            SecurityHeader::ReferrerPolicy => self.referrer_policy.is_some(),
            SecurityHeader::ContentSecurityPolicy => self.content_security_policy.is_some(),
            SecurityHeader::XssProtection => self.xss_protection.is_some(),
        }
    }

    /// Unsets the field for `h`.
    pub fn remove(&mut self, h: SecurityHeader) {
        match h {
            SecurityHeader::StrictTransportSecurity => self.strict_transport_security = None,
            SecurityHeader::ContentTypeOptions => self.content_type_options = None,
            SecurityHeader::FrameOptions => self.frame_options = None,
            SecurityHeader::ReferrerPolicy => self.referrer_policy = None,
            SecurityHeader::ContentSecurityPolicy => self.content_security_policy = None,
            SecurityHeader::XssProtection => self.xss_protection = None,
        }
    }
}

/// SecurityHeadersPolicy: the values are the typed headers' defaults (which are CloudFront's
/// managed values); the preset turns the five headers on and picks `override` as CloudFront
/// does: only X-Content-Type-Options replaces the upstream's header.
fn security_headers_preset() -> SecurityHeaders {
    SecurityHeaders {
        strict_transport_security: Some(StrictTransportSecurity {
            override_upstream: Some(false),
            ..StrictTransportSecurity::default()
        }),
        content_type_options: Some(ContentTypeOptions {
            override_upstream: Some(true),
        }),
        frame_options: Some(FrameOptions {
            override_upstream: Some(false),
            ..FrameOptions::default()
        }),
        referrer_policy: Some(ReferrerPolicyHeader {
            override_upstream: Some(false),
            ..ReferrerPolicyHeader::default()
        }),
        content_security_policy: None,
        xss_protection: Some(XssProtection {
            override_upstream: Some(false),
            ..XssProtection::default()
        }),
    }
}

/// `user` field by field over `preset`: each field the user sets wins.
macro_rules! refine {
    ($preset:expr, $user:expr, [$($f:ident),*]) => {
        match ($preset, $user) {
            (None, u) => u.clone(),
            (Some(p), None) => Some(p),
            (Some(mut p), Some(u)) => {
                $(if u.$f.is_some() { p.$f = u.$f.clone(); })*
                Some(p)
            }
        }
    };
}

#[cfg(test)]
thread_local! {
    /// How many times `with_presets` ran on this thread: tests prove it is once per policy.
    pub static EXPANSIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl CorsPolicySpec {
    /// Whether a preset is set, so [`CorsPolicySpec::with_presets`] changes anything.
    pub fn has_presets(&self) -> bool {
        self.cors.preset.is_some()
            || self
                .response_headers
                .as_ref()
                .is_some_and(|r| r.preset == Some(ResponseHeadersPreset::SecurityHeaders))
    }

    /// The spec with its presets expanded into ordinary fields (the `preset` fields stay, for
    /// display). Without presets this is a plain clone.
    pub fn with_presets(&self) -> CorsPolicySpec {
        #[cfg(test)]
        EXPANSIONS.with(|n| n.set(n.get() + 1));
        let mut spec = self.clone();
        if let Some(preset) = self.cors.preset {
            let c = &mut spec.cors;
            if c.allow_origins.is_empty() && c.allow_origin_patterns.is_empty() {
                c.allow_origins = vec!["*".into()];
            }
            c.origin_override.get_or_insert(false);
            match preset {
                CorsPreset::SimpleCors => {
                    c.preflight.get_or_insert(PreflightMode::Passthrough);
                }
                CorsPreset::CorsWithPreflight => {
                    c.preflight.get_or_insert(PreflightMode::Respond);
                    c.allow_methods.get_or_insert_with(|| {
                        CORS_WITH_PREFLIGHT_METHODS.map(String::from).to_vec()
                    });
                    if c.allow_headers.is_empty() {
                        c.allow_headers = vec!["*".into()];
                    }
                }
            }
        }
        if let Some(rh) = &mut spec.response_headers
            && rh.preset == Some(ResponseHeadersPreset::SecurityHeaders)
        {
            let mut p = security_headers_preset();
            // A `set` entry of the same name replaces the preset's header.
            for h in SecurityHeader::ALL {
                if rh
                    .set
                    .iter()
                    .any(|s| s.name.eq_ignore_ascii_case(h.header()))
                {
                    p.remove(h);
                }
            }
            let u = rh.security.clone().unwrap_or_default();
            rh.security = Some(SecurityHeaders {
                strict_transport_security: refine!(
                    p.strict_transport_security,
                    &u.strict_transport_security,
                    [
                        max_age_seconds,
                        include_subdomains,
                        preload,
                        override_upstream
                    ]
                ),
                content_type_options: refine!(
                    p.content_type_options,
                    &u.content_type_options,
                    [override_upstream]
                ),
                frame_options: refine!(
                    p.frame_options,
                    &u.frame_options,
                    [value, override_upstream]
                ),
                referrer_policy: refine!(
                    p.referrer_policy,
                    &u.referrer_policy,
                    [value, override_upstream]
                ),
                content_security_policy: u.content_security_policy.clone(),
                xss_protection: refine!(
                    p.xss_protection,
                    &u.xss_protection,
                    [protection, mode_block, report_uri, override_upstream]
                ),
            });
        }
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> CorsPolicySpec {
        serde_saphyr::from_str(yaml).expect("spec")
    }

    const BASE: &str = "hosts: [a.example]\nupstream: {url: 'http://u:1'}\n";

    #[test]
    fn no_preset_is_a_plain_clone() {
        assert!(!spec(BASE).has_presets());
        let s = spec(&format!(
            "{BASE}cors: {{allowOrigins: ['https://x.example']}}\nresponseHeaders: {{security: {{frameOptions: {{value: DENY}}}}}}"
        ));
        assert_eq!(s.with_presets(), s);
    }

    #[test]
    fn cors_presets_fill_only_what_the_user_left_unset() {
        let simple = spec(&format!("{BASE}cors: {{preset: SimpleCORS}}")).with_presets();
        assert_eq!(simple.cors.allow_origins, ["*"]);
        assert_eq!(simple.cors.preflight, Some(PreflightMode::Passthrough));
        assert_eq!(simple.cors.origin_override, Some(false));
        assert_eq!(simple.cors.allow_methods, None);

        let pre = spec(&format!("{BASE}cors: {{preset: CORSWithPreflight}}")).with_presets();
        assert_eq!(pre.cors.preflight, Some(PreflightMode::Respond));
        assert_eq!(
            pre.cors.allow_methods.as_deref(),
            Some(&CORS_WITH_PREFLIGHT_METHODS.map(String::from)[..])
        );
        assert_eq!(pre.cors.allow_headers, ["*"]);

        let refined = spec(&format!(
            "{BASE}cors: {{preset: CORSWithPreflight, allowOriginPatterns: ['^https://x$'], allowHeaders: [x-a], originOverride: true, preflight: Forward}}"
        ))
        .with_presets();
        assert!(
            refined.cors.allow_origins.is_empty(),
            "patterns replace the preset's \"*\""
        );
        assert_eq!(refined.cors.allow_headers, ["x-a"]);
        assert_eq!(refined.cors.origin_override, Some(true));
        assert_eq!(refined.cors.preflight, Some(PreflightMode::Forward));
    }

    #[test]
    fn security_preset_is_refined_field_by_field_and_replaced_by_set() {
        let s = spec(&format!(
            "{BASE}responseHeaders:\n  preset: SecurityHeaders\n  security: {{strictTransportSecurity: {{includeSubdomains: true}}, frameOptions: {{value: DENY}}}}\n  set: [{{name: x-xss-protection, value: '0'}}]"
        ))
        .with_presets();
        let sec = s
            .response_headers
            .and_then(|r| r.security)
            .expect("security");
        let hsts = sec.strict_transport_security.expect("hsts");
        assert_eq!(hsts.include_subdomains, Some(true));
        assert_eq!(
            hsts.override_upstream,
            Some(false),
            "the preset's override stays"
        );
        let fo = sec.frame_options.expect("frame options");
        assert_eq!(
            (fo.value, fo.override_upstream),
            (Some(super::super::FrameOption::Deny), Some(false))
        );
        assert_eq!(
            sec.content_type_options.and_then(|c| c.override_upstream),
            Some(true)
        );
        assert!(
            sec.xss_protection.is_none(),
            "set replaces the preset's header"
        );
        assert!(sec.content_security_policy.is_none());
    }
}
