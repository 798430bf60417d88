//! Who may come in, and what a request may do: the credential check, the response headers
//! (CSP without inline script), read-only mode, and the CSRF token every POST carries
//! (a double-submit cookie, SameSite=Strict, compared in constant time).

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::config::Credential;
use crate::state::AppState;

pub const CSRF_COOKIE: &str = "aijob_csrf";
pub const CSRF_FIELD: &str = "csrf";

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Equal bytes, in time that does not depend on where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request's Authorization header carries the credential.
pub fn authorized(cred: &Credential, headers: &HeaderMap) -> bool {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let basic = || -> Option<(String, String)> {
        let b64 = given.strip_prefix("Basic ")?;
        let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    };
    match cred {
        Credential::None => true,
        Credential::Token(t) => {
            given.strip_prefix("Bearer ").is_some_and(|b| same(b.trim().as_bytes(), t.as_bytes()))
                || basic().is_some_and(|(_, p)| same(p.as_bytes(), t.as_bytes()))
        }
        Credential::Basic { user, password } => basic().is_some_and(|(u, p)| {
            // both compared, whatever the first gives
            same(u.as_bytes(), user.as_bytes()) & same(p.as_bytes(), password.as_bytes())
        }),
    }
}

/// Whether a Host header names this machine's loopback (any port).
pub fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    matches!(name, "localhost" | "::1") || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

pub async fn require_credential(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if app.config.credential == Credential::None {
        // Without a credential only loopback is served, and only under a loopback name: a
        // page of another site that rebinds its DNS name to 127.0.0.1 gets nothing.
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !loopback_host(host) {
            return (
                StatusCode::FORBIDDEN,
                "aijob-web: without a credential only http://127.0.0.1 and http://localhost are served\n",
            )
                .into_response();
        }
        return next.run(req).await;
    }
    if authorized(&app.config.credential, req.headers()) {
        return next.run(req).await;
    }
    let mut r = (StatusCode::UNAUTHORIZED, "aijob-web: a credential is required (AIJOB_WEB_TOKEN)\n").into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"aijob\", charset=\"UTF-8\""));
    r
}

/// Read-only mode: the server refuses every state change, whatever the page showed.
pub async fn refuse_changes_when_read_only(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if app.config.read_only && !matches!(*req.method(), Method::GET | Method::HEAD) {
        return (StatusCode::FORBIDDEN, "aijob-web runs read-only (--read-only): no action is allowed\n")
            .into_response();
    }
    next.run(req).await
}

/// Headers on every response; a CSRF cookie for a browser that has none yet.
pub async fn headers(req: Request, next: Next) -> Response {
    let has_cookie = csrf_cookie(req.headers()).is_some();
    let token = if has_cookie { None } else { Some(new_token()) };
    let mut req = req;
    if let Some(t) = &token {
        // the page rendered for this very request already carries the new token
        req.extensions_mut().insert(FreshCsrf(t.clone()));
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(t) = token {
        let cookie = format!("{CSRF_COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
    }
    r
}

/// The CSRF token made for a request that came without the cookie.
#[derive(Clone)]
pub struct FreshCsrf(pub String);

pub fn csrf_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, v)| *k == CSRF_COOKIE && v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|(_, v)| v.to_string())
}

/// The request's CSRF token, for the forms of the page being rendered.
pub fn csrf_for(headers: &HeaderMap, ext: &axum::http::Extensions) -> String {
    csrf_cookie(headers).or_else(|| ext.get::<FreshCsrf>().map(|f| f.0.clone())).unwrap_or_default()
}

pub fn new_token() -> String {
    let mut b = [0u8; 16];
    // no randomness from the OS means no tokens worth having: every POST is then refused
    if getrandom::getrandom(&mut b).is_err() {
        return String::new();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A POSTed form whose CSRF token matched the cookie: its fields in order.
pub struct Posted(pub Vec<(String, String)>);

impl Posted {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request<Body>, state: &S) -> Result<Self, Self::Rejection> {
        let refuse = |why: &str| (StatusCode::FORBIDDEN, format!("aijob-web: {why}\n")).into_response();
        let cookie = csrf_cookie(req.headers());
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| (StatusCode::BAD_REQUEST, "unreadable form\n").into_response())?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| (StatusCode::BAD_REQUEST, "unreadable form\n").into_response())?;
        let sent = fields.iter().find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.as_str());
        match (cookie, sent) {
            (Some(c), Some(s)) if !c.is_empty() && same(c.as_bytes(), s.as_bytes()) => Ok(Posted(fields)),
            (None, _) => Err(refuse("refused: no CSRF cookie (reload the page and try again)")),
            _ => Err(refuse("refused: the form's CSRF token is missing or wrong (reload the page and try again)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    fn basic(u: &str, p: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
    }

    #[test]
    fn tokens_and_basic_auth() {
        let t = Credential::Token("0123456789abcdef".into());
        assert!(authorized(&t, &with_auth("Bearer 0123456789abcdef")));
        assert!(authorized(&t, &with_auth(&basic("anyone", "0123456789abcdef"))));
        assert!(!authorized(&t, &with_auth("Bearer 0123456789abcdeX")));
        assert!(!authorized(&t, &HeaderMap::new()));
        let b = Credential::Basic { user: "ops".into(), password: "pw".into() };
        assert!(authorized(&b, &with_auth(&basic("ops", "pw"))));
        assert!(!authorized(&b, &with_auth(&basic("dev", "pw"))));
        assert!(!authorized(&b, &with_auth("Bearer pw")));
        assert!(authorized(&Credential::None, &HeaderMap::new()));
    }

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1:8080", "localhost:8080", "localhost", "[::1]:8080", "127.0.0.2:1"] {
            assert!(loopback_host(h), "{h}");
        }
        for h in ["evil.example:8080", "10.0.0.1:8080", "", "[2001:db8::1]:80", "localhost.evil.example"] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn csrf_cookie_is_read_among_others() {
        let mut h = HeaderMap::new();
        let t = new_token();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("a=b; {CSRF_COOKIE}={t}; c=d")).unwrap());
        assert_eq!(csrf_cookie(&h), Some(t));
        h.insert(header::COOKIE, HeaderValue::from_static("aijob_csrf=short"));
        assert_eq!(csrf_cookie(&h), None);
    }
}
