//! Matching requests against configured routes, by path alone.
//!
//! A route is what a call is, and a gRPC service routes on the path whatever the HTTP
//! method, so no rule looks at the method: a rule that did would let the same call
//! through with another method, unauthenticated or unlimited.

use std::borrow::Cow;

/// How a route rule matches the request path (query string excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path equals this value.
    Exact(String),
    /// The path starts with this value.
    Prefix(String),
}

/// A path rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// Path condition.
    pub path: PathMatch,
}

impl RouteRule {
    /// A rule matching one exact path.
    pub fn exact(path: &str) -> Self {
        Self {
            path: PathMatch::Exact(path.to_owned()),
        }
    }

    /// A rule matching a path prefix.
    pub fn prefix(prefix: &str) -> Self {
        Self {
            path: PathMatch::Prefix(prefix.to_owned()),
        }
    }

    /// The configured path or prefix.
    pub fn pattern(&self) -> &str {
        match &self.path {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        }
    }

    /// Whether this rule matches a request exactly, as a rule that grants something (a
    /// public route) must. `path` is the raw `:path` (query allowed).
    ///
    /// A path with dot segments, doubled slashes, percent escapes, backslashes or `;`
    /// parameters never matches: Envoy normalizes paths before the filter runs, so such a
    /// path is an attempt to make a protected route look public, and failing to match
    /// keeps it behind authentication.
    pub fn matches(&self, path: &str) -> bool {
        plain_path(path).is_some_and(|path| self.matches_plain(path))
    }

    /// Whether this rule matches a request under any reading of its path, as a rule that
    /// restricts something (a rate limit) must: the path is canonicalized (escapes decoded,
    /// `;` parameters, dot segments, doubled and trailing slashes removed) and compared
    /// without regard to ASCII case. A path that some upstream might read as this route
    /// is then limited as this route, even if it also needs a token.
    pub fn matches_any_reading(&self, path: &str) -> bool {
        let path = canonical_path(path_without_query(path));
        let pattern = self.pattern();
        match &self.path {
            PathMatch::Exact(_) => {
                path.eq_ignore_ascii_case(pattern)
                    || path.eq_ignore_ascii_case(pattern.trim_end_matches('/'))
            }
            PathMatch::Prefix(_) => {
                path.get(..pattern.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(pattern))
                    // A prefix ending in `/` names a directory, which the canonical form
                    // of the directory itself (`/public/` read as `/public`) must match.
                    || (pattern.len() > 1
                        && pattern.ends_with('/')
                        && path.eq_ignore_ascii_case(pattern.trim_end_matches('/')))
            }
        }
    }

    /// [`RouteRule::matches`] for a path [`plain_path`] returned: a set of rules checks
    /// the request's path once, not once per rule.
    pub fn matches_plain(&self, path: &str) -> bool {
        match &self.path {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// The path part of a `:path` header value.
pub fn path_without_query(path: &str) -> &str {
    let end = path
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

/// The path part of `:path` as rules that grant something match it, or `None` when the
/// path is ambiguous (see [`RouteRule::matches`]) and so matches none of them.
pub fn plain_path(path: &str) -> Option<&str> {
    let path = path_without_query(path);
    (!is_ambiguous_path(path)).then_some(path)
}

/// Whether `path` has a percent escape, a backslash, a `;`, a doubled slash or a dot
/// segment: one pass over its bytes, since every request's path is checked.
fn is_ambiguous_path(path: &str) -> bool {
    let is_dot_segment = |segment: Option<&[u8]>| matches!(segment, Some(b"." | b".."));
    let bytes = path.as_bytes();
    let mut segment_start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        match byte {
            b'%' | b'\\' | b';' => return true,
            b'/' => {
                if (i > 0 && bytes.get(i - 1) == Some(&b'/'))
                    || is_dot_segment(bytes.get(segment_start..i))
                {
                    return true;
                }
                segment_start = i + 1;
            }
            _ => {}
        }
    }
    is_dot_segment(bytes.get(segment_start..))
}

/// The path as an upstream that decodes escapes and ignores `;` parameters, empty
/// segments and dot segments would read it; borrowed when there is nothing to undo.
pub fn canonical_path(path: &str) -> Cow<'_, str> {
    let trailing_slash = path.len() > 1 && path.ends_with('/');
    if !is_ambiguous_path(path) && !trailing_slash {
        return Cow::Borrowed(path);
    }
    let decoded = percent_decode(&path.replace('\\', "/"));
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        // `;` starts path parameters (RFC 3986 §3.3), which some servers strip.
        let segment = segment.split(';').next().unwrap_or("");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    Cow::Owned(format!("/{}", segments.join("/")))
}

/// Decodes `%XX` escapes (once); an invalid escape is kept as it is. Bytes that do not
/// form UTF-8 become U+FFFD, which matches no route.
fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        // Two hex digits exactly: `from_str_radix` alone would also take a sign (`%+2`).
        let escape = (b == b'%')
            .then(|| {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
            })
            .flatten();
        match escape {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_rule_ignores_query_string() {
        let rule = RouteRule::exact("/v1/auth/login");
        assert!(rule.matches("/v1/auth/login?next=x"));
        assert!(!rule.matches("/v1/auth/login/extra"));
        assert!(!rule.matches("/v1/auth/logins"));
    }

    #[test]
    fn prefix_rule_matches_any_path_below_it() {
        let rule = RouteRule::prefix("/public/");
        assert!(rule.matches("/public/a/b"));
        assert!(!rule.matches("/private/a"));
    }

    #[test]
    fn dot_segments_escapes_and_parameters_never_match_a_granting_rule() {
        let rule = RouteRule::prefix("/healthz");
        for path in [
            "/healthz/../v1/users/me",
            "/healthz/./x",
            "/healthz//x",
            "/healthz%2f..",
            "/healthz\\x",
            "/healthz;x=1",
        ] {
            assert!(!rule.matches(path), "{path} must not match");
        }
    }

    #[test]
    fn ambiguous_paths_are_found_in_one_pass_as_by_the_rules_spelled_out() {
        let spelled_out = |path: &str| {
            path.contains(['%', '\\', ';'])
                || path.contains("//")
                || path
                    .split('/')
                    .any(|segment| segment == "." || segment == "..")
        };
        for path in [
            "",
            "/",
            ".",
            "..",
            "/.",
            "/..",
            "./",
            "../",
            "/a/.",
            "/a/..",
            "/a/./b",
            "/a/../b",
            "/a/.b",
            "/a/..b",
            "/a/b.",
            "/.a",
            "//",
            "/a//b",
            "a//",
            "/a/b/",
            "/a%2f",
            "/a\\b",
            "/a;b",
            "/bench",
            "/v1/users/me",
            "/...",
            "/a/.../b",
        ] {
            assert_eq!(
                is_ambiguous_path(path),
                spelled_out(path),
                "{path:?} is judged differently"
            );
        }
    }

    #[test]
    fn restricting_rule_matches_every_reading_of_its_path() {
        let rule = RouteRule::exact("/bulwark.auth.v1.AuthService/Login");
        for path in [
            "/bulwark.auth.v1.AuthService/Login",
            "/bulwark.auth.v1.AuthService/Login?x=1",
            "/bulwark.auth.v1.AuthService/Login/",
            "/bulwark.auth.v1.AuthService//Login",
            "//bulwark.auth.v1.AuthService/Login",
            "/bulwark.auth.v1.authservice/login",
            "/bulwark.auth.v1.AuthService/%4Cogin",
            "/bulwark.auth.v1.AuthService%2FLogin",
            "/bulwark.auth.v1.AuthService/Login;x=1",
            "/bulwark.auth.v1.AuthService/./Login",
            "/bulwark.auth.v1.AuthService/x/../Login",
            "/bulwark.auth.v1.AuthService\\Login",
        ] {
            assert!(rule.matches_any_reading(path), "{path} must be limited");
        }
        for path in [
            "/bulwark.auth.v1.AuthService/Logout",
            "/bulwark.auth.v1.AuthService/LoginX",
            "/bulwark.auth.v1.AuthService/Login/x",
        ] {
            assert!(!rule.matches_any_reading(path), "{path} is another route");
        }
    }

    #[test]
    fn a_directory_prefix_limits_the_directory_itself() {
        // Found by the `descriptors` fuzz target: the prefix `/public/` granted
        // `/public/` (matches) but did not limit it (its canonical form is `/public`).
        let rule = RouteRule::prefix("/public/");
        for path in ["/public/", "/public", "/PUBLIC/", "/public//", "/public/x"] {
            assert!(rule.matches_any_reading(path), "{path} must be limited");
        }
        assert!(!rule.matches_any_reading("/publicity"));
        assert!(!rule.matches_any_reading("/"));
    }

    #[test]
    fn canonical_path_borrows_a_plain_path() {
        assert!(matches!(canonical_path("/v1/users/me"), Cow::Borrowed(_)));
        assert_eq!(canonical_path("/a/%2e%2e/b//c/"), "/b/c");
        assert_eq!(canonical_path("/a/%zz"), "/a/%zz");
    }

    #[test]
    fn an_escape_needs_two_hex_digits_and_a_sign_is_not_one() {
        // Found by the `descriptors` fuzz target: `%+2` was decoded as byte 2.
        assert_eq!(canonical_path("/a%+2b/"), "/a%+2b");
        assert_eq!(canonical_path("/a%-1b/"), "/a%-1b");
        assert_eq!(canonical_path("/a%2Bb/"), "/a+b");
    }
}
