//! A bearer-token server in the way Docker Hub's `auth.docker.io` works (distribution's
//! "Token Authentication Specification"): the registry answers 401 with
//! `WWW-Authenticate: Bearer realm=...,service=...,scope=...`; the client asks
//! `GET REALM?service=SERVICE&scope=repository:NAME:pull,push` (with Basic credentials if it
//! has any) and gets `{"token": JWT, "access_token": JWT, "expires_in": 300}`.
//!
//! The JWT is signed RS256 with a key whose self-signed certificate is the registry's
//! `rootcertbundle`; the certificate travels in the header's `x5c`, which distribution 2.8
//! verifies against that bundle. Wrong credentials get 401; no credentials get a token with
//! pull access only if anonymous pull was allowed, else one with no access at all.
//!
//! With a TLS registry the realm is https too (same test CA), as `auth.docker.io` is.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::json;

use super::{certs, RegistryError};

/// The `service` (JWT audience) the registry and the token server agree on.
pub const SERVICE: &str = "containers-by-hand-registry";
/// The `issuer` the registry trusts.
pub const ISSUER: &str = "containers-by-hand-token-server";
/// How long a token lasts, in seconds.
const EXPIRES_IN: u64 = 300;

/// What the server thread needs: who may log in and how to sign.
struct Authority {
    user: String,
    password: String,
    key: PathBuf,
    /// The signing certificate (DER, base64) for the JWT header's `x5c`.
    x5c: String,
    anonymous_pull: AtomicBool,
    requests: AtomicUsize,
    log: Mutex<Vec<String>>,
}

/// A running token server on 127.0.0.1; stopped on drop.
pub struct TokenServer {
    realm: String,
    address: SocketAddr,
    authority: Arc<Authority>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Starts serving tokens for `user`/`password`, signed with `key` (PEM) whose
    /// certificate is `cert`; over https with the registry's certificate when `tls` is given.
    pub fn start(
        user: &str,
        password: &str,
        key: PathBuf,
        cert: &std::path::Path,
        tls: Option<&certs::TlsFiles>,
    ) -> Result<Self, RegistryError> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| RegistryError::io("127.0.0.1:0", e))?;
        let address = listener
            .local_addr()
            .map_err(|e| RegistryError::io("token listener", e))?;
        let tls = tls.map(certs::server_config).transpose()?;
        let authority = Arc::new(Authority {
            user: user.to_string(),
            password: password.to_string(),
            key,
            x5c: STANDARD.encode(certs::certificate_der(cert)?),
            anonymous_pull: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (authority, stop) = (Arc::clone(&authority), Arc::clone(&stop));
            std::thread::spawn(move || serve(&listener, &authority, tls.as_ref(), &stop))
        };
        Ok(TokenServer {
            realm: format!("{scheme}://{address}/token"),
            address,
            authority,
            stop,
            thread: Some(thread),
        })
    }

    /// The realm URL the registry sends clients to.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Lets requests without credentials have pull access (as Docker Hub does for public
    /// repositories). Off by default.
    pub fn set_anonymous_pull(&self, allowed: bool) {
        self.authority
            .anonymous_pull
            .store(allowed, Ordering::SeqCst);
    }

    /// How many token requests arrived so far.
    pub fn requests(&self) -> usize {
        self.authority.requests.load(Ordering::SeqCst)
    }

    /// One line per token request: `token: GET PATH -> STATUS`.
    pub fn log(&self) -> String {
        self.authority
            .log
            .lock()
            .map(|l| l.join(""))
            .unwrap_or_default()
    }

    /// A token for `scope` as the server would hand it to the configured user.
    pub fn token_for(&self, scope: &str) -> Result<String, RegistryError> {
        let access = access_claims(&[scope.to_string()], true);
        jwt(&self.authority, &self.authority.user, access)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept() so the thread sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections one at a time until `stop`; each gets one response and is closed.
fn serve(
    listener: &TcpListener,
    authority: &Authority,
    tls: Option<&Arc<ServerConfig>>,
    stop: &AtomicBool,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        // A client that connects and says nothing must not hold the server for long.
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let _ = match tls {
            None => handle(stream, authority),
            Some(config) => handle_tls(stream, config, authority),
        };
    }
}

/// Serves one request inside a TLS session, closing it with close_notify.
fn handle_tls(
    stream: TcpStream,
    config: &Arc<ServerConfig>,
    authority: &Authority,
) -> std::io::Result<()> {
    let connection = ServerConnection::new(Arc::clone(config)).map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(connection, stream);
    handle(&mut tls, authority)?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// Reads the request line and headers, answers, logs.
fn handle(mut stream: impl Read + Write, authority: &Authority) -> std::io::Result<()> {
    let head = read_head(&mut stream)?;
    let mut lines = head.lines();
    let target = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let authorization = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim().to_string());
    let (status, body) = answer(authority, &target, authorization.as_deref());
    authority.requests.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut log) = authority.log.lock() {
        log.push(format!("token: GET {target} -> {status}\n"));
    }
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        _ => "Internal Server Error",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// The request line and headers, up to the blank line (at most 64 KiB).
fn read_head(stream: &mut impl Read) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The status and JSON body for a token request.
fn answer(authority: &Authority, target: &str, authorization: Option<&str>) -> (u16, String) {
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let scopes: Vec<String> = query_values(query, "scope");
    if query_values(query, "service").first().map(String::as_str) != Some(SERVICE) {
        return (
            400,
            json!({"errors": [{"code": "UNSUPPORTED", "message": "unknown service"}]}).to_string(),
        );
    }
    let (subject, access) = match authorization.map(|a| check_basic(authority, a)) {
        Some(Some(user)) => (user, access_claims(&scopes, true)),
        Some(None) => {
            return (
                401,
                json!({"details": "incorrect username or password"}).to_string(),
            )
        }
        None => {
            let pull = authority.anonymous_pull.load(Ordering::SeqCst);
            let access = if pull {
                access_claims(&scopes, false)
            } else {
                Vec::new()
            };
            (String::new(), access)
        }
    };
    match jwt(authority, &subject, access) {
        Ok(token) => (
            200,
            json!({"token": token, "access_token": token, "expires_in": EXPIRES_IN}).to_string(),
        ),
        Err(e) => (500, json!({"details": e.to_string()}).to_string()),
    }
}

/// The user name when `Basic BASE64(user:password)` matches, else `None`.
fn check_basic(authority: &Authority, header: &str) -> Option<String> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    (user == authority.user && password == authority.password).then(|| user.to_string())
}

/// The `access` claim: for each `repository:NAME:ACTIONS` scope, the actions granted (all of
/// them when authenticated, `pull` alone otherwise).
fn access_claims(scopes: &[String], authenticated: bool) -> Vec<serde_json::Value> {
    scopes
        .iter()
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let granted: Vec<&str> = actions
                .split(',')
                .filter(|a| authenticated || *a == "pull")
                .collect();
            Some(json!({"type": kind, "name": name, "actions": granted}))
        })
        .collect()
}

/// A signed JWT (RFC 7519) with the claims distribution checks: iss, aud, exp, nbf, access.
fn jwt(
    authority: &Authority,
    subject: &str,
    access: Vec<serde_json::Value>,
) -> Result<String, RegistryError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [authority.x5c]});
    let claims = json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "iat": now, "nbf": now.saturating_sub(10), "exp": now + EXPIRES_IN,
        "jti": format!("{now}-{}", authority.requests.load(Ordering::SeqCst)),
        "access": access,
    });
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = certs::sign_rs256(&authority.key, signed.as_bytes())?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// Every value of `key` in a query string, percent-decoded.
fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (other, _) => {
                out.push(other);
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
    fn scopes_become_access_claims() {
        let scopes = ["repository:library/busybox:pull,push".to_string()];
        let claims = access_claims(&scopes, false);
        assert_eq!(
            claims,
            vec![json!({"type": "repository", "name": "library/busybox", "actions": ["pull"]})]
        );
    }

    #[test]
    fn query_values_are_decoded() {
        let q = "service=s&scope=repository%3Aa%2Fb%3Apull&scope=x";
        assert_eq!(query_values(q, "scope"), ["repository:a/b:pull", "x"]);
    }
}
