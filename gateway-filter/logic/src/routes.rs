//! Matching requests against configured routes (method plus exact path or path prefix).

/// How a route rule matches the request path (query string excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path equals this value.
    Exact(String),
    /// The path starts with this value.
    Prefix(String),
}

/// A method plus path rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// Upper-case method; `None` matches any method.
    pub method: Option<String>,
    /// Path condition.
    pub path: PathMatch,
}

impl RouteRule {
    /// A rule matching one exact path.
    pub fn exact(method: Option<&str>, path: &str) -> Self {
        Self {
            method: method.map(str::to_owned),
            path: PathMatch::Exact(path.to_owned()),
        }
    }

    /// A rule matching a path prefix.
    pub fn prefix(method: Option<&str>, prefix: &str) -> Self {
        Self {
            method: method.map(str::to_owned),
            path: PathMatch::Prefix(prefix.to_owned()),
        }
    }

    /// The configured path or prefix.
    pub fn pattern(&self) -> &str {
        match &self.path {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        }
    }

    /// Whether this rule matches a request. `path` is the raw `:path` (query allowed).
    ///
    /// A path with dot segments, doubled slashes or percent escapes never matches: Envoy
    /// normalizes paths before the filter runs, so such a path is an attempt to make a
    /// protected route look public, and failing to match keeps it behind authentication.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if let Some(m) = &self.method
            && m != method
        {
            return false;
        }
        let path = path_without_query(path);
        if is_ambiguous_path(path) {
            return false;
        }
        match &self.path {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// The path part of a `:path` header value.
pub fn path_without_query(path: &str) -> &str {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

fn is_ambiguous_path(path: &str) -> bool {
    path.contains('%')
        || path.contains("//")
        || path.contains('\\')
        || path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_rule_ignores_query_string() {
        let rule = RouteRule::exact(Some("POST"), "/v1/auth/login");
        assert!(rule.matches("POST", "/v1/auth/login?next=x"));
        assert!(!rule.matches("GET", "/v1/auth/login"));
        assert!(!rule.matches("POST", "/v1/auth/login/extra"));
    }

    #[test]
    fn prefix_rule_matches_any_path_below_it() {
        let rule = RouteRule::prefix(Some("OPTIONS"), "/");
        assert!(rule.matches("OPTIONS", "/v1/users/me"));
        assert!(!rule.matches("GET", "/v1/users/me"));
    }

    #[test]
    fn rule_without_method_matches_every_method() {
        let rule = RouteRule::exact(None, "/healthz");
        assert!(rule.matches("GET", "/healthz"));
        assert!(rule.matches("DELETE", "/healthz"));
    }

    #[test]
    fn dot_segments_and_escapes_never_match_a_public_rule() {
        let rule = RouteRule::prefix(None, "/healthz");
        for path in [
            "/healthz/../v1/users/me",
            "/healthz/./x",
            "/healthz//x",
            "/healthz%2f..",
            "/healthz\\x",
        ] {
            assert!(!rule.matches("GET", path), "{path} must not match");
        }
    }
}
