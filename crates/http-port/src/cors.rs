//! Cross-origin requests: which origins a browser may call the API from
//! (`http_cors_origins`), and the headers that tell it so.
//!
//! The dashboard at `/` needs none of this (it is same-origin); it is for dashboards hosted
//! elsewhere. With no origins configured (the default) no CORS header is ever sent, and a
//! browser keeps other sites' pages from reading the API.

/// Request headers a cross-origin caller may send.
const ALLOWED_HEADERS: &str = "Content-Type, Last-Event-ID";

/// How long a browser may cache a preflight's answer, in seconds.
const MAX_AGE: u32 = 600;

/// The configured origins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    /// Exact origins (`https://ops.example.com`), compared as sent.
    origins: Vec<String>,
    /// `*` was configured: every origin.
    any: bool,
}

impl Cors {
    /// A policy allowing `origins` (`*` for every origin; none for no CORS at all).
    pub fn new(origins: &[String]) -> Self {
        Cors {
            any: origins.iter().any(|origin| origin == "*"),
            origins: origins.iter().filter(|o| *o != "*").cloned().collect(),
        }
    }

    /// The headers to add to a response to a request from `origin`.
    pub(crate) fn headers(&self, origin: Option<&str>) -> Vec<String> {
        match origin {
            _ if self.any => vec!["Access-Control-Allow-Origin: *".to_owned()],
            Some(origin) if self.origins.iter().any(|allowed| allowed == origin) => vec![
                format!("Access-Control-Allow-Origin: {origin}"),
                "Vary: Origin".to_owned(),
            ],
            // The answer depends on the origin whenever some are allowed.
            _ if !self.origins.is_empty() => vec!["Vary: Origin".to_owned()],
            _ => Vec::new(),
        }
    }

    /// The headers a preflight (`OPTIONS`) from `origin` gets besides [`Cors::headers`],
    /// for a route that takes `allow`.
    pub(crate) fn preflight(&self, origin: Option<&str>, allow: &str) -> Vec<String> {
        let allowed = self.any
            || origin.is_some_and(|origin| self.origins.iter().any(|allowed| allowed == origin));
        if !allowed {
            return Vec::new();
        }
        vec![
            format!("Access-Control-Allow-Methods: {allow}"),
            format!("Access-Control-Allow-Headers: {ALLOWED_HEADERS}"),
            format!("Access-Control-Max-Age: {MAX_AGE}"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_origins_are_allowed() {
        let none = Cors::new(&[]);
        assert!(none.headers(Some("https://a")).is_empty());
        assert!(none.preflight(Some("https://a"), "GET").is_empty());
        let some = Cors::new(&["https://a".to_owned()]);
        assert_eq!(
            some.headers(Some("https://a")),
            ["Access-Control-Allow-Origin: https://a", "Vary: Origin"]
        );
        assert_eq!(some.headers(Some("https://b")), ["Vary: Origin"]);
        assert_eq!(some.preflight(Some("https://a"), "POST, OPTIONS").len(), 3);
        assert!(
            some.preflight(Some("https://b"), "POST, OPTIONS")
                .is_empty()
        );
        let any = Cors::new(&["*".to_owned()]);
        assert_eq!(any.headers(None), ["Access-Control-Allow-Origin: *"]);
    }
}
