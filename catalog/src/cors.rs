//! CORS rules of a volume, as S3 has them (`CORSRule`), and how a browser's request is matched
//! against them: the first rule whose origin, method and request headers all match applies.
//! An origin or header pattern may hold one `*` (any run of characters); origins compare
//! exactly, header names without regard to case.

use serde::{Deserialize, Serialize};

use crate::CatalogError;

/// The methods a rule may allow (S3's list).
pub const CORS_METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "HEAD"];

/// At most this many rules per volume (S3's limit).
pub const MAX_CORS_RULES: usize = 100;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i32>,
}

/// Whether `text` matches `pattern`, which may hold one `*`.
fn wildcard(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (pattern, text) = if ignore_case {
        (pattern.to_ascii_lowercase(), text.to_ascii_lowercase())
    } else {
        (pattern.to_string(), text.to_string())
    };
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.len() >= head.len() + tail.len() && text.starts_with(head) && text.ends_with(tail)
        }
    }
}

impl CorsRule {
    /// Checks a volume's rule list as S3 does: 1 to 100 rules, each with origins and known
    /// methods, at most one `*` per origin or header pattern, a max age that is not negative.
    pub fn check(rules: &[CorsRule]) -> Result<(), CatalogError> {
        let bad = |message: String| Err(CatalogError::invalid("cors", message));
        if rules.is_empty() {
            return bad("a CORS configuration needs at least one rule".into());
        }
        if rules.len() > MAX_CORS_RULES {
            return bad(format!(
                "at most {MAX_CORS_RULES} CORS rules ({} given)",
                rules.len()
            ));
        }
        for (i, r) in rules.iter().enumerate() {
            let n = i + 1;
            if r.allowed_origins.is_empty() {
                return bad(format!("CORS rule {n} has no AllowedOrigin"));
            }
            if r.allowed_methods.is_empty() {
                return bad(format!("CORS rule {n} has no AllowedMethod"));
            }
            if let Some(m) = r
                .allowed_methods
                .iter()
                .find(|m| !CORS_METHODS.contains(&m.as_str()))
            {
                return bad(format!(
                    "CORS rule {n}: `{m}` is not a method CORS rules allow ({})",
                    CORS_METHODS.join(", ")
                ));
            }
            for p in r.allowed_origins.iter().chain(&r.allowed_headers) {
                if p.matches('*').count() > 1 {
                    return bad(format!("CORS rule {n}: `{p}` holds more than one '*'"));
                }
            }
            if r.max_age_seconds.is_some_and(|s| s < 0) {
                return bad(format!("CORS rule {n}: MaxAgeSeconds may not be negative"));
            }
        }
        Ok(())
    }

    /// Whether this rule lets `origin` use `method`, sending `headers`.
    pub fn allows(&self, origin: &str, method: &str, headers: &[&str]) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| wildcard(o, origin, false))
            && self.allowed_methods.iter().any(|m| m == method)
            && headers.iter().all(|h| {
                self.allowed_headers
                    .iter()
                    .any(|pattern| wildcard(pattern, h, true))
            })
    }

    /// The first rule of `rules` that lets `origin` use `method` with `headers`.
    pub fn find<'a>(
        rules: &'a [CorsRule],
        origin: &str,
        method: &str,
        headers: &[&str],
    ) -> Option<&'a CorsRule> {
        rules.iter().find(|r| r.allows(origin, method, headers))
    }

    /// What `Access-Control-Allow-Origin` says for `origin`: `*` when the rule allows any.
    pub fn allow_origin<'a>(&self, origin: &'a str) -> &'a str {
        if self.allowed_origins.iter().any(|o| o == "*") {
            "*"
        } else {
            origin
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        CorsRule {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
            allowed_headers: headers.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_first_rule_that_allows_all_applies() {
        let rules = vec![
            rule(&["https://*.esa.int"], &["GET", "HEAD"], &["range"]),
            rule(&["*"], &["GET"], &[]),
        ];
        let hit = CorsRule::find(&rules, "https://datalabs.esa.int", "GET", &["Range"]).unwrap();
        assert_eq!(
            hit.allow_origin("https://datalabs.esa.int"),
            "https://datalabs.esa.int"
        );
        // Another origin, no request headers: the second rule, any origin.
        let any = CorsRule::find(&rules, "http://localhost:8080", "GET", &[]).unwrap();
        assert_eq!(any.allow_origin("http://localhost:8080"), "*");
        // A header no rule allows, a method no rule allows.
        assert!(CorsRule::find(&rules, "http://localhost:8080", "GET", &["x-custom"]).is_none());
        assert!(CorsRule::find(&rules, "https://a.esa.int", "PUT", &[]).is_none());
        // Origins compare with their scheme, exactly.
        assert!(!rules[0].allows("http://datalabs.esa.int", "GET", &[]));
    }

    #[test]
    fn rule_lists_are_checked() {
        assert!(CorsRule::check(&[rule(&["*"], &["GET"], &["*"])]).is_ok());
        for bad in [
            vec![],
            vec![rule(&[], &["GET"], &[])],
            vec![rule(&["*"], &[], &[])],
            vec![rule(&["*"], &["PATCH"], &[])],
            vec![rule(&["*.*"], &["GET"], &[])],
            vec![rule(&["*"], &["GET"], &[]); MAX_CORS_RULES + 1],
        ] {
            let e = CorsRule::check(&bad).unwrap_err();
            assert!(
                matches!(e, CatalogError::Invalid { field: "cors", .. }),
                "{e}"
            );
        }
    }
}
