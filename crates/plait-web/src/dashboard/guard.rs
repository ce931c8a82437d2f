//! Who may ask what: the bearer token, the loopback-only `Host` check that stops DNS
//! rebinding, and the CSRF defence on requests that change state. Also serves the page's
//! static shell, the one thing answered without the token (it holds no data).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::Shared;
use super::api::ApiError;

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");

/// The header the page sends its CSRF token in.
const CSRF_HEADER: &str = "x-plait-csrf";

pub(crate) struct Guard {
    token: Option<String>,
    hosts: Vec<String>,
    /// This server's CSRF token: in the page, so only a page read from this origin has it.
    csrf: String,
}

impl Guard {
    pub(crate) fn new(token: Option<String>, hosts: Vec<String>) -> Guard {
        let mut bytes = [0_u8; 16];
        // Without the system's randomness the token is only as good as the clock; the
        // origin and content-type checks still hold.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            bytes = nanos.to_le_bytes();
        }
        Guard {
            token,
            hosts,
            csrf: bytes.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        matches!(name, "localhost" | "127.0.0.1" | "::1" | "[::1]")
            || self.hosts.iter().any(|allowed| allowed == name)
    }

    fn bearer_ok(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|given| same(given.trim().as_bytes(), token.as_bytes()))
    }

    /// Whether a state-changing request may go on; if not, why.
    fn csrf_refusal(&self, headers: &HeaderMap) -> Option<ApiError> {
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let json = text(header::CONTENT_TYPE)
            .is_some_and(|kind| kind.split(';').next() == Some("application/json"));
        if !json {
            return Some(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a request that changes state sends JSON: Content-Type: application/json",
            ));
        }
        let host = text(header::HOST).unwrap_or_default();
        if let Some(origin) = text(header::ORIGIN) {
            let own = origin
                .strip_prefix("http://")
                .or(origin.strip_prefix("https://"));
            if own != Some(host) {
                return Some(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "a request from the page at {origin} may not change this dashboard's state"
                    ),
                ));
            }
        }
        if text(header::HeaderName::from_static("sec-fetch-site")) == Some("cross-site") {
            return Some(ApiError::new(
                StatusCode::FORBIDDEN,
                "a request from another site may not change this dashboard's state",
            ));
        }
        let from_a_browser = headers.contains_key(header::ORIGIN)
            || headers.contains_key(header::HeaderName::from_static("sec-fetch-mode"));
        let csrf_ok = text(header::HeaderName::from_static(CSRF_HEADER))
            .is_some_and(|given| same(given.as_bytes(), self.csrf.as_bytes()));
        if from_a_browser && !csrf_ok {
            return Some(ApiError::new(
                StatusCode::FORBIDDEN,
                "the page's CSRF token is missing or stale: reload the dashboard",
            ));
        }
        None
    }
}

/// Every request passes here first.
pub(crate) async fn check(State(board): State<Shared>, request: Request, next: Next) -> Response {
    let guard = &board.guard;
    let headers = request.headers();
    if guard.token.is_none() {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !guard.host_allowed(host) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this dashboard answers loopback names only, not Host {host:?}: serve it with a token (--token or PLAIT_TOKEN), or allow the name (--allow-host)"
                ),
            )
            .into_response();
        }
    }
    let method = request.method().clone();
    let reads = method == Method::GET || method == Method::HEAD;
    let shell = reads
        && matches!(
            request.uri().path(),
            "/" | "/assets/dashboard.js" | "/assets/dashboard.css"
        );
    if !shell && !guard.bearer_ok(headers) {
        let mut refused = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this dashboard needs its token: send Authorization: Bearer TOKEN",
        )
        .into_response();
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return refused;
    }
    if !reads && let Some(refusal) = guard.csrf_refusal(headers) {
        return refusal.into_response();
    }
    next.run(request).await
}

pub(crate) async fn page(State(board): State<Shared>) -> Response {
    let page = PAGE.replace("{{CSRF}}", &board.guard.csrf).replace(
        "{{TOKEN_NEEDED}}",
        if board.guard.token.is_some() {
            "yes"
        } else {
            "no"
        },
    );
    let mut response = Html(page).into_response();
    // The page is never framed (clickjacking) and runs only its own script.
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

pub(crate) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

pub(crate) async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

/// `host` without its port: `127.0.0.1:8080` → `127.0.0.1`, `[::1]:80` → `[::1]`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.split(':').next().unwrap_or(host)
}

/// Compares two secrets in time that depends on their lengths only.
fn same(given: &[u8], secret: &[u8]) -> bool {
    given.len() == secret.len() && given.iter().zip(secret).fold(0, |d, (a, b)| d | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_named_without_its_port() {
        assert_eq!(host_name("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(host_name("[::1]:9000"), "[::1]");
        assert_eq!(host_name("evil.example:80"), "evil.example");
    }

    #[test]
    fn only_loopback_names_and_allowed_hosts_pass() {
        let guard = Guard::new(None, vec!["box.lan".into()]);
        assert!(guard.host_allowed("127.0.0.1:1234"));
        assert!(guard.host_allowed("[::1]:1234"));
        assert!(guard.host_allowed("box.lan:80"));
        assert!(!guard.host_allowed("evil.example:1234"));
        assert!(!guard.host_allowed(""));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abd", b"abc"));
        assert!(!same(b"ab", b"abc"));
    }
}
