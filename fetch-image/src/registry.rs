//! The HTTP side of the distribution API (distribution-spec `spec.md`):
//!
//! ```text
//! GET /v2/                               is this a registry, and how do I log in?
//! GET /v2/NAME/manifests/TAG|DIGEST      a manifest or an index
//! GET /v2/NAME/blobs/DIGEST              a config or a layer (often a redirect)
//! ```
//!
//! Redirects are followed by hand, not by reqwest, so that each hop is
//! checked: the `Authorization` header only ever goes to the registry's own
//! origin (scheme, host and port), and https is never followed to http.
//! 429, 5xx and broken connections are retried with exponential backoff.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::{ACCEPT, AUTHORIZATION, LOCATION, RANGE, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use crate::auth::{self, Challenge, Credentials, RealmError};
use crate::explain::{curl_command, Reporter, ShownAuth};
use crate::reference::{is_loopback_host, Reference};

/// Token and error bodies larger than this are refused.
pub const MAX_SMALL_BODY: u64 = 1024 * 1024;
const MAX_REDIRECTS: usize = 10;

/// How to talk to the registry.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// false: accept any certificate, and plain http.
    pub tls_verify: bool,
    /// Extra CA certificates (`*.crt`), as in containers-certs.d(5).
    pub cert_dir: Option<PathBuf>,
    pub retry_times: u32,
    pub credentials: Option<Credentials>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("GET {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("GET {url}: HTTP {status}{detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{registry} does not speak the registry API: GET /v2/ answered HTTP {status}")]
    NotARegistry { registry: String, status: u16 },
    #[error("authentication to {registry} failed: {reason}")]
    Auth { registry: String, reason: String },
    #[error("refusing redirect from {from} to {to}: {reason}")]
    Redirect {
        from: String,
        to: String,
        reason: &'static str,
    },
    #[error("GET {url}: more than {limit} redirects")]
    TooManyRedirects { url: String, limit: usize },
    #[error(transparent)]
    Realm(#[from] RealmError),
    #[error("GET {url}: response larger than the {limit} bytes allowed")]
    TooLarge { url: String, limit: u64 },
    #[error("cannot read certificate '{}'", path.display())]
    ReadCert {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate '{}' is not valid PEM", path.display())]
    BadCert {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
}

impl RegistryError {
    /// Worth another try: the network or the server may recover.
    fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Transport { .. })
    }
}

/// A connection to one repository of one registry.
pub struct Registry<'r> {
    http: Client,
    /// `https://host:port/` (or http, for loopback and `--tls-verify=false`).
    origin: Url,
    name: String,
    repository: String,
    options: ConnectOptions,
    /// The `Authorization` value in use: Basic credentials or a bearer token.
    authorization: Mutex<Option<String>>,
    reporter: &'r Reporter,
}

impl<'r> Registry<'r> {
    /// Finds the registry's API (`GET /v2/`) and logs in if it asks for it.
    ///
    /// https first; plain http only for a loopback registry or with
    /// `--tls-verify=false`, and only when https failed for a reason other
    /// than a bad certificate (never a silent downgrade past a TLS error).
    pub fn connect(
        reference: &Reference,
        options: ConnectOptions,
        reporter: &'r Reporter,
    ) -> Result<Self, RegistryError> {
        let http = build_client(&options)?;
        let host = reference.api_host();
        let http_allowed = reference.is_loopback() || !options.tls_verify;
        let schemes: &[&str] = if http_allowed {
            &["https", "http"]
        } else {
            &["https"]
        };
        let mut last_error = None;
        for (i, scheme) in schemes.iter().enumerate() {
            let origin = Url::parse(&format!("{scheme}://{host}/")).map_err(|e| {
                RegistryError::Transport {
                    url: format!("{scheme}://{host}/"),
                    reason: e.to_string(),
                }
            })?;
            let registry = Registry {
                http: http.clone(),
                origin,
                name: reference.registry.clone(),
                repository: reference.repository.clone(),
                options: options.clone(),
                authorization: Mutex::new(None),
                reporter,
            };
            let last = i + 1 == schemes.len();
            match registry.ping(!last) {
                Ok(()) => return Ok(registry),
                Err(e @ RegistryError::Transport { .. }) if !last && !is_certificate_error(&e) => {
                    reporter.explain(|| {
                        format!("# no https at {host}; plain http is allowed here (loopback or --tls-verify=false)")
                    });
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or(RegistryError::Transport {
            url: host.to_owned(),
            reason: "no usable scheme".to_owned(),
        }))
    }

    fn ping(&self, once: bool) -> Result<(), RegistryError> {
        let url = self.url("v2/")?;
        let retries = if once { 0 } else { self.options.retry_times };
        let response = self.with_retries(retries, || self.follow(&url, &[], None))?;
        match response.status() {
            status if status.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED => {
                let challenge = challenge_of(&response).ok_or_else(|| RegistryError::Auth {
                    registry: self.name.clone(),
                    reason: "401 without a WWW-Authenticate challenge we understand".into(),
                })?;
                self.authenticate(&challenge)
            }
            status => Err(RegistryError::NotARegistry {
                registry: self.name.clone(),
                status: status.as_u16(),
            }),
        }
    }

    /// Answers a challenge: Basic credentials, or a bearer token for pulling
    /// this repository.
    fn authenticate(&self, challenge: &Challenge) -> Result<(), RegistryError> {
        let credentials = self.options.credentials.as_ref();
        let header = match challenge {
            Challenge::Basic => {
                let Some(credentials) = credentials else {
                    return Err(self.needs_credentials());
                };
                let header = credentials.basic_header();
                if self.current_authorization().as_ref() == Some(&header) {
                    // Sent already and refused.
                    return Err(self.wrong_credentials(credentials));
                }
                header
            }
            Challenge::Bearer { realm, service, .. } => {
                format!("Bearer {}", self.bearer_token(realm, service.as_deref())?)
            }
        };
        *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(header);
        Ok(())
    }

    /// The token dance: GET the realm for a pull scope on this repository, with the
    /// credentials (if any) as Basic auth sent to the realm's origin only.
    fn bearer_token(&self, realm: &str, service: Option<&str>) -> Result<String, RegistryError> {
        // Our own scope, whatever the challenge proposes.
        let scope = format!("repository:{}:pull", self.repository);
        // A hostile registry may point the realm at a metadata service or a file: checked.
        let realm = auth::check_realm(realm, !self.options.tls_verify)?;
        let url = auth::token_url(realm.clone(), service, &scope);
        let basic = self
            .options
            .credentials
            .as_ref()
            .map(Credentials::basic_header);
        let response = self.with_retries(self.options.retry_times, || {
            self.follow_as(&url, &[], None, basic.as_deref().map(|b| (&realm, b)))
        })?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(self.refused()),
            _ => return Err(status_error(response)),
        }
        let body = read_limited(response, MAX_SMALL_BODY)?;
        auth::parse_token(&body).ok_or_else(|| RegistryError::Auth {
            registry: self.name.clone(),
            reason: format!(
                "the token server at {} sent no usable token",
                url.origin().ascii_serialization()
            ),
        })
    }

    fn current_authorization(&self) -> Option<String> {
        self.authorization
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Access denied: the credentials given were wrong, or some were needed.
    fn refused(&self) -> RegistryError {
        match &self.options.credentials {
            Some(credentials) => self.wrong_credentials(credentials),
            None => self.needs_credentials(),
        }
    }

    fn needs_credentials(&self) -> RegistryError {
        RegistryError::Auth {
            registry: self.name.clone(),
            reason: format!(
                "access to '{}' was denied: it needs credentials (--creds, --authfile) or does not exist",
                self.repository
            ),
        }
    }

    fn wrong_credentials(&self, credentials: &Credentials) -> RegistryError {
        RegistryError::Auth {
            registry: self.name.clone(),
            reason: format!(
                "credentials for '{}' were refused (wrong user name or password, or no pull access to '{}')",
                credentials.username, self.repository
            ),
        }
    }

    fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.origin
            .join(path)
            .map_err(|e| RegistryError::Transport {
                url: format!("{}{path}", self.origin),
                reason: e.to_string(),
            })
    }

    /// `GET /v2/NAME/manifests/REFERENCE`.
    pub fn manifest_url(&self, reference: &str) -> Result<Url, RegistryError> {
        self.url(&format!("v2/{}/manifests/{reference}", self.repository))
    }

    /// `GET /v2/NAME/blobs/DIGEST`; the digest must have been checked already.
    pub fn blob_url(&self, digest: &str) -> Result<Url, RegistryError> {
        self.url(&format!("v2/{}/blobs/{digest}", self.repository))
    }

    /// A GET with the registry's credentials, retries, one re-login on 401,
    /// and checked redirects. The caller judges the final status.
    pub fn get(
        &self,
        url: &Url,
        accept: &[&str],
        range_start: Option<u64>,
    ) -> Result<Response, RegistryError> {
        let mut logged_in_again = false;
        loop {
            let response = self.with_retries(self.options.retry_times, || {
                self.follow(url, accept, range_start)
            })?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            // A token expired, or this registry wants credentials only now.
            match challenge_of(&response) {
                Some(challenge) if !logged_in_again => {
                    logged_in_again = true;
                    self.authenticate(&challenge)?;
                }
                _ => return Err(self.refused()),
            }
        }
    }

    /// Reads a response body of at most `limit` bytes.
    pub fn read_limited(&self, response: Response, limit: u64) -> Result<Vec<u8>, RegistryError> {
        read_limited(response, limit)
    }

    /// Runs `attempt`, again after a growing pause when it fails in a way
    /// that may pass (connection trouble, 429, 5xx), at most `retries` more times.
    fn with_retries(
        &self,
        retries: u32,
        attempt: impl Fn() -> Result<Response, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let mut tries = 0;
        loop {
            let result = attempt();
            let pause = match &result {
                Ok(response)
                    if response.status() == StatusCode::TOO_MANY_REQUESTS
                        || response.status().is_server_error() =>
                {
                    retry_after(response).unwrap_or_else(|| backoff(tries))
                }
                Err(e) if e.is_transient() => backoff(tries),
                _ => return result,
            };
            if tries >= retries {
                return match result {
                    Ok(response) => Err(status_error(response)),
                    Err(e) => Err(e),
                };
            }
            tries += 1;
            self.reporter
                .explain(|| format!("# retry {tries}/{retries} in {:.1}s", pause.as_secs_f32()));
            std::thread::sleep(pause);
        }
    }

    /// [`follow_as`](Self::follow_as) with the registry's current `Authorization`.
    fn follow(
        &self,
        url: &Url,
        accept: &[&str],
        range_start: Option<u64>,
    ) -> Result<Response, RegistryError> {
        let authorization = self.current_authorization();
        self.follow_as(
            url,
            accept,
            range_start,
            authorization.as_deref().map(|a| (&self.origin, a)),
        )
    }

    /// One GET and its redirects. `auth` is sent only while the URL is on
    /// the same origin as the one it was given for.
    fn follow_as(
        &self,
        url: &Url,
        accept: &[&str],
        range_start: Option<u64>,
        auth: Option<(&Url, &str)>,
    ) -> Result<Response, RegistryError> {
        let mut url = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let authorization = auth
                .filter(|(origin, _)| origin.origin() == url.origin())
                .map(|(_, value)| value);
            let mut request = self.http.get(url.clone());
            if !accept.is_empty() {
                request = request.header(ACCEPT, accept.join(", "));
            }
            if let Some(start) = range_start {
                request = request.header(RANGE, format!("bytes={start}-"));
            }
            if let Some(value) = authorization {
                request = request.header(AUTHORIZATION, value);
            }
            let result = request.send();
            self.explain_request(&url, accept, authorization, range_start, &result);
            let response = result.map_err(|e| RegistryError::Transport {
                url: url.to_string(),
                reason: root_cause(&e),
            })?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let Some(location) = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
            else {
                return Ok(response);
            };
            let next = url.join(location).map_err(|_| RegistryError::Redirect {
                from: url.to_string(),
                to: location.chars().take(200).collect(),
                reason: "not a valid URL",
            })?;
            self.check_redirect(&url, &next)?;
            url = next;
        }
        Err(RegistryError::TooManyRedirects {
            url: url.to_string(),
            limit: MAX_REDIRECTS,
        })
    }

    fn check_redirect(&self, from: &Url, to: &Url) -> Result<(), RegistryError> {
        redirect_allowed(from, to, self.options.tls_verify).map_err(|reason| {
            RegistryError::Redirect {
                from: from.to_string(),
                to: to.to_string(),
                reason,
            }
        })
    }

    fn explain_request(
        &self,
        url: &Url,
        accept: &[&str],
        authorization: Option<&str>,
        range_start: Option<u64>,
        result: &reqwest::Result<Response>,
    ) {
        self.reporter.explain(|| {
            let outcome = match result {
                Ok(response) => {
                    let status = response.status();
                    let mut text = format!(
                        "{} {}",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("")
                    );
                    if let Some(location) = response.headers().get(LOCATION) {
                        text.push_str(&format!(" -> {}", location.to_str().unwrap_or("?")));
                    }
                    text
                }
                Err(e) => format!("error: {}", root_cause(e)),
            };
            let shown = match authorization {
                Some(a) if a.starts_with("Basic ") => ShownAuth::Basic(
                    self.options
                        .credentials
                        .as_ref()
                        .map_or("USER", |c| c.username.as_str()),
                ),
                Some(_) => ShownAuth::Bearer,
                None => ShownAuth::None,
            };
            let curl = curl_command(
                url.as_str(),
                accept,
                shown,
                range_start,
                !self.options.tls_verify,
            );
            format!("GET {url} => {outcome}   # like: {curl}")
        });
    }
}

/// Whether a redirect may be followed: never from https down to http, and
/// plain http only to loopback unless TLS verification is off.
pub fn redirect_allowed(from: &Url, to: &Url, tls_verify: bool) -> Result<(), &'static str> {
    match (from.scheme(), to.scheme()) {
        ("https", "https") | ("http", "https") => Ok(()),
        ("https", "http") => Err("https must not be downgraded to plain http"),
        ("http", "http") if !tls_verify || to.host_str().is_some_and(is_loopback_host) => Ok(()),
        ("http", "http") => Err("plain http is only allowed to loopback addresses"),
        _ => Err("only http(s) redirects are followed"),
    }
}

fn build_client(options: &ConnectOptions) -> Result<Client, RegistryError> {
    let mut builder = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fetch-image/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        // In the blocking client this bounds each read: a stalled server.
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .danger_accept_invalid_certs(!options.tls_verify);
    if let Some(dir) = &options.cert_dir {
        for path in crt_files(dir)? {
            let pem = std::fs::read(&path).map_err(|source| RegistryError::ReadCert {
                path: path.clone(),
                source,
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
                RegistryError::BadCert {
                    path: path.clone(),
                    source,
                }
            })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
    }
    builder.build().map_err(RegistryError::Client)
}

fn crt_files(dir: &Path) -> Result<Vec<PathBuf>, RegistryError> {
    let entries = std::fs::read_dir(dir).map_err(|source| RegistryError::ReadCert {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "crt"))
        .collect();
    files.sort();
    Ok(files)
}

fn challenge_of(response: &Response) -> Option<Challenge> {
    response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(auth::parse_challenge)
}

fn backoff(tries: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << tries.min(6))).min(Duration::from_secs(10))
}

/// `Retry-After: SECONDS`, capped: a server may not park us for long.
fn retry_after(response: &Response) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(30)))
}

/// Reads a whole body, refusing more than `limit` bytes.
pub fn read_limited(response: Response, limit: u64) -> Result<Vec<u8>, RegistryError> {
    let url = response.url().to_string();
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(RegistryError::TooLarge { url, limit });
    }
    let mut body = Vec::new();
    response
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| RegistryError::Transport {
            url: url.clone(),
            reason: io_root_cause(&e),
        })?;
    if body.len() as u64 > limit {
        return Err(RegistryError::TooLarge { url, limit });
    }
    Ok(body)
}

/// An HTTP error status, with the first message of the registry's JSON
/// error body (`{"errors":[{"code":..,"message":..}]}`) if it has one.
pub fn status_error(response: Response) -> RegistryError {
    let url = response.url().to_string();
    let status = response.status().as_u16();
    let body = read_limited(response, MAX_SMALL_BODY).unwrap_or_default();
    let detail = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let first = v.get("errors")?.get(0)?.clone();
            let code = first.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let message = first.get("message").and_then(|m| m.as_str()).unwrap_or("");
            Some(format!(" ({code}: {message})"))
        })
        .map(|d| d.chars().filter(|c| !c.is_control()).take(300).collect())
        .unwrap_or_default();
    RegistryError::Status {
        url,
        status,
        detail,
    }
}

/// The innermost cause of a reqwest error: "Connection refused (os error
/// 111)", "invalid peer certificate: UnknownIssuer", not three layers of
/// "error sending request".
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let text = cause.to_string();
    if error.to_string().contains("timed out") || text.contains("timed out") {
        return "timed out".to_owned();
    }
    text
}

fn io_root_cause(error: &std::io::Error) -> String {
    match error.get_ref() {
        Some(inner) => root_cause(inner),
        None => error.to_string(),
    }
}

fn is_certificate_error(error: &RegistryError) -> bool {
    matches!(error, RegistryError::Transport { reason, .. } if reason.contains("certificate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_never_downgrade() {
        let url = |u: &str| Url::parse(u).unwrap();
        let https = url("https://registry.example/v2/a/blobs/x");
        let http_local = url("http://127.0.0.1:5000/v2/a/blobs/x");
        assert!(redirect_allowed(&https, &url("https://cdn.example/blob"), true).is_ok());
        assert!(redirect_allowed(&https, &url("http://cdn.example/blob"), true).is_err());
        assert!(redirect_allowed(&https, &url("http://127.0.0.1/blob"), false).is_err());
        assert!(redirect_allowed(&http_local, &url("http://127.0.0.2:1/b"), true).is_ok());
        assert!(redirect_allowed(&http_local, &url("http://cdn.example/b"), true).is_err());
        assert!(redirect_allowed(&http_local, &url("http://cdn.example/b"), false).is_ok());
        assert!(redirect_allowed(&http_local, &url("https://cdn.example/b"), true).is_ok());
        assert!(redirect_allowed(&https, &url("file:///etc/passwd"), false).is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(200));
        assert_eq!(backoff(1), Duration::from_millis(400));
        assert_eq!(backoff(30), Duration::from_secs(10));
    }
}
