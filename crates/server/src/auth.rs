//! Who may do what.
//!
//! - Tokens come from the environment, in three scopes: `WEIR_READ_TOKENS`
//!   (pages and `GET`), `WEIR_ADMIN_TOKENS` (all of it: edits, triggers, the
//!   SQL box; and reading), `WEIR_INGEST_TOKENS` (only `POST /events`). Each is
//!   a comma-separated list, so a token is rotated by adding the new one,
//!   restarting, moving the clients, and removing the old one.
//! - API clients send `Authorization: Bearer …`. Pages log in with a token and
//!   keep an `HttpOnly`, `SameSite=Strict` session cookie.
//! - A request that changes state on the strength of a cookie (or of the open
//!   mode, which has no token at all) must come from this server's own pages:
//!   its `Origin` (and `Sec-Fetch-Site`) say so, and a session's request
//!   carries the session's CSRF token. A bearer token is not sent by a
//!   browser on its own, so a request that carries one is not checked.
//! - Without any token the server is open, and refuses to listen beyond loopback.
//!
//! Tokens are kept as SHA-256 digests and compared in constant time; no token
//! is ever written to a log, a page or an answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use sha2::{Digest, Sha256};

use crate::state::AppState;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Read,
    Admin,
    Ingest,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
            Scope::Ingest => "ingest",
        }
    }
}

type Digest32 = [u8; 32];

/// The configured tokens, as digests.
#[derive(Clone, Default)]
pub struct Tokens {
    read: Vec<Digest32>,
    admin: Vec<Digest32>,
    ingest: Vec<Digest32>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens(read: {}, admin: {}, ingest: {})", self.read.len(), self.admin.len(), self.ingest.len())
    }
}

impl Tokens {
    pub const READ_VAR: &'static str = "WEIR_READ_TOKENS";
    pub const ADMIN_VAR: &'static str = "WEIR_ADMIN_TOKENS";
    pub const INGEST_VAR: &'static str = "WEIR_INGEST_TOKENS";

    /// From `WEIR_READ_TOKENS`, `WEIR_ADMIN_TOKENS` and `WEIR_INGEST_TOKENS`.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let list = |var: &str| -> Vec<Digest32> {
            lookup(var).unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()).map(digest).collect()
        };
        Self { read: list(Self::READ_VAR), admin: list(Self::ADMIN_VAR), ingest: list(Self::INGEST_VAR) }
    }

    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.admin.is_empty() && self.ingest.is_empty()
    }

    /// The scopes a token grants (none if unknown).
    fn scopes(&self, token: &str) -> Scopes {
        let d = digest(token);
        let has = |list: &[Digest32]| list.iter().fold(false, |found, t| found | same(t, &d));
        let admin = has(&self.admin);
        Scopes { read: admin || has(&self.read), admin, ingest: admin || has(&self.ingest) }
    }
}

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &Digest32, b: &Digest32) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Scopes {
    read: bool,
    admin: bool,
    ingest: bool,
}

impl Scopes {
    const ALL: Scopes = Scopes { read: true, admin: true, ingest: true };

    pub fn has(self, scope: Scope) -> bool {
        match scope {
            Scope::Read => self.read,
            Scope::Admin => self.admin,
            Scope::Ingest => self.ingest,
        }
    }

    fn any(self) -> bool {
        self.read || self.admin || self.ingest
    }
}

/// Who made a request, as the handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub scopes: Scopes,
    /// The session's CSRF token, for the forms a page renders.
    pub csrf: Option<String>,
    /// Which bucket its ingestion counts against.
    pub key: String,
}

impl Caller {
    pub fn can(&self, scope: Scope) -> bool {
        self.scopes.has(scope)
    }
}

struct Session {
    scopes: Scopes,
    token: Digest32,
    csrf: String,
    expires: Instant,
}

/// Sessions live this long.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const COOKIE: &str = "weir_session";

pub(crate) struct Auth {
    tokens: Tokens,
    secure_cookies: bool,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Auth {
    pub fn new(tokens: Tokens, secure_cookies: bool) -> Self {
        Self { tokens, secure_cookies, sessions: Mutex::default() }
    }

    /// No token configured: every caller on loopback may do everything.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Who is calling, and whether by cookie; `Err` for a token that is not known.
    fn identify(&self, headers: &HeaderMap) -> Result<Identified, Denied> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).unwrap_or("");
            let scopes = self.tokens.scopes(token);
            if !scopes.any() {
                return Err(Denied::UnknownToken);
            }
            let key = hex(&digest(token)[..8]);
            return Ok(Identified { caller: Caller { scopes, csrf: None, key }, by_cookie: false });
        }
        if let Some(id) = cookie(headers, COOKIE)
            && let Ok(mut sessions) = self.sessions.lock()
        {
            let now = Instant::now();
            sessions.retain(|_, s| s.expires > now);
            // Sessions live in memory: a token rotated out of the environment (a restart) ends them.
            if let Some(s) = sessions.get(id) {
                let key = hex(&s.token[..8]);
                return Ok(Identified {
                    caller: Caller { scopes: s.scopes, csrf: Some(s.csrf.clone()), key },
                    by_cookie: true,
                });
            }
        }
        if self.is_open() {
            return Ok(Identified {
                caller: Caller { scopes: Scopes::ALL, csrf: None, key: "open".to_owned() },
                by_cookie: true,
            });
        }
        Err(Denied::NoCredentials)
    }

    /// A new session for a token; its cookie.
    fn open_session(&self, token: &str) -> Option<String> {
        let scopes = self.tokens.scopes(token);
        if !(scopes.read || scopes.admin) {
            return None;
        }
        let id = random_hex(32);
        let session = Session {
            scopes: Scopes { ingest: false, ..scopes },
            token: digest(token),
            csrf: random_hex(32),
            expires: Instant::now() + SESSION_TTL,
        };
        self.sessions.lock().ok()?.insert(id.clone(), session);
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        Some(format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", SESSION_TTL.as_secs()))
    }

    fn close_session(&self, headers: &HeaderMap) {
        if let (Some(id), Ok(mut sessions)) = (cookie(headers, COOKIE), self.sessions.lock()) {
            sessions.remove(id);
        }
    }
}

struct Identified {
    caller: Caller,
    by_cookie: bool,
}

#[derive(Debug)]
pub(crate) enum Denied {
    NoCredentials,
    UnknownToken,
    Scope(Scope),
    CrossSite(&'static str),
}

impl Denied {
    fn response(&self, page: bool, uri: &str) -> Response {
        let (status, message) = match self {
            Denied::NoCredentials => (
                StatusCode::UNAUTHORIZED,
                "no credentials: send `Authorization: Bearer <token>`, or log in at /login".to_owned(),
            ),
            Denied::UnknownToken => (StatusCode::UNAUTHORIZED, "the token is not known to this server".to_owned()),
            Denied::Scope(s) => (
                StatusCode::FORBIDDEN,
                format!("this needs a token with the {} scope (WEIR_{}_TOKENS)", s.name(), s.name().to_uppercase()),
            ),
            Denied::CrossSite(why) => (StatusCode::FORBIDDEN, format!("refused as a cross-site request: {why}")),
        };
        if page && matches!(self, Denied::NoCredentials) {
            let next = url::form_urlencoded::byte_serialize(uri.as_bytes()).collect::<String>();
            return Redirect::to(&format!("/login?next={next}")).into_response();
        }
        let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A request for a page (not the API): a browser, which is sent to log in.
fn wants_page(req: &Request) -> bool {
    let path = req.uri().path();
    !(path.starts_with("/api/") || path == "/events" && req.method() == Method::POST || path.starts_with("/analytics/"))
}

/// Does a request that changes state come from this server's own pages?
fn same_origin(headers: &HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err("the browser says it comes from another site (Sec-Fetch-Site)");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin == "null" || origin_host != host {
            return Err("its Origin is not this server");
        }
    }
    Ok(())
}

async fn authorize(state: AppState, scope: Scope, mut req: Request, next: Next) -> Response {
    let page = wants_page(&req);
    let uri = req.uri().to_string();
    let identified = match state.auth.identify(req.headers()) {
        Ok(i) => i,
        Err(denied) => return denied.response(page, &uri),
    };
    if !identified.caller.can(scope) {
        return Denied::Scope(scope).response(page, &uri);
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes && identified.by_cookie {
        if let Err(why) = same_origin(req.headers()) {
            return Denied::CrossSite(why).response(false, &uri);
        }
        // A session's scripts send its CSRF token in a header, its forms in a `csrf` field.
        if let Some(expected) = &identified.caller.csrf {
            let header = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let (ok, rebuilt) = match header {
                Some(h) => (h == *expected, req),
                None => {
                    let (parts, body) = req.into_parts();
                    let bytes = match axum::body::to_bytes(body, MAX_FORM).await {
                        Ok(b) => b,
                        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response(),
                    };
                    let field = url::form_urlencoded::parse(&bytes).find(|(k, _)| k == "csrf").map(|(_, v)| v);
                    let ok = field.is_some_and(|v| v == expected.as_str());
                    (ok, Request::from_parts(parts, axum::body::Body::from(bytes)))
                }
            };
            if !ok {
                return Denied::CrossSite("the session's CSRF token is missing or wrong").response(false, &uri);
            }
            req = rebuilt;
        }
    }
    req.extensions_mut().insert(identified.caller);
    next.run(req).await
}

/// The largest form a page posts.
const MAX_FORM: usize = 1 << 20;

pub(crate) async fn need_read(State(s): State<AppState>, req: Request, next: Next) -> Response {
    authorize(s, Scope::Read, req, next).await
}

pub(crate) async fn need_admin(State(s): State<AppState>, req: Request, next: Next) -> Response {
    authorize(s, Scope::Admin, req, next).await
}

pub(crate) async fn need_ingest(State(s): State<AppState>, req: Request, next: Next) -> Response {
    authorize(s, Scope::Ingest, req, next).await
}

#[derive(serde::Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`: a token for a session cookie.
pub(crate) async fn login(State(s): State<AppState>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    if let Err(why) = same_origin(&headers) {
        return Denied::CrossSite(why).response(false, "/login");
    }
    match s.auth.open_session(form.token.trim()) {
        Some(cookie) => {
            // Only a path on this server.
            let next = if form.next.starts_with('/') && !form.next.starts_with("//") { form.next } else { "/".into() };
            let mut response = Redirect::to(&next).into_response();
            if let Ok(v) = header::HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        None => crate::pages::login_failed(&form.next),
    }
}

/// `POST /logout`.
pub(crate) async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(why) = same_origin(&headers) {
        return Denied::CrossSite(why).response(false, "/logout");
    }
    s.auth.close_session(&headers);
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        header::HeaderValue::from_static("weir_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` random bytes as hex, from the operating system (through uuid's v4, which reads it).
fn random_hex(n: usize) -> String {
    let mut out = String::with_capacity(n * 2);
    while out.len() < n * 2 {
        out.push_str(&hex(uuid::Uuid::new_v4().as_bytes()));
    }
    out.truncate(n * 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::from_env(|k| match k {
            "WEIR_READ_TOKENS" => Some("r1, r2".into()),
            "WEIR_ADMIN_TOKENS" => Some("a1".into()),
            "WEIR_INGEST_TOKENS" => Some("i1,".into()),
            _ => None,
        })
    }

    #[test]
    fn scopes_follow_the_lists() {
        let t = tokens();
        assert_eq!(t.scopes("r2"), Scopes { read: true, admin: false, ingest: false });
        assert_eq!(t.scopes("a1"), Scopes::ALL);
        assert_eq!(t.scopes("i1"), Scopes { read: false, admin: false, ingest: true });
        assert!(!t.scopes("").any());
        assert!(!t.scopes("r3").any());
        assert_eq!(format!("{t:?}"), "Tokens(read: 2, admin: 1, ingest: 1)");
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h).is_ok());
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h).is_ok());
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(same_origin(&h).is_err());
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(same_origin(&h).is_err());
    }
}
