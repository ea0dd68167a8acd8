//! A real registry for tests: Debian's `docker-registry serve` (distribution 2.8) on
//! 127.0.0.1 with a free port, its storage and generated configuration in a temporary
//! directory, in one of four modes: anonymous, Basic auth (htpasswd, bcrypt), bearer tokens
//! the way Docker Hub issues them (a token server inside the harness), each over http or TLS
//! with a CA made for the test. Stopped and removed on drop.
//!
//! It also pushes (the distribution upload API: `POST .../blobs/uploads/`, then one `PUT`,
//! or `PATCH` chunks and a closing `PUT`) and reads back manifests and blobs.
//!
//! ```no_run
//! use tests::registry::{Auth, Registry, RegistryConfig};
//! let registry = Registry::start(RegistryConfig { auth: Auth::Anonymous, tls: false });
//! println!("{}", registry.base_url()); // http://127.0.0.1:PORT
//! ```

mod certs;
mod remote;
mod token;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use reqwest::blocking::Client;
use reqwest::StatusCode;

use remote::Credentials;
pub use remote::Remote;
use token::TokenServer;
pub use token::{ISSUER, SERVICE};

/// The commands a registry needs: the server, and openssl/htpasswd for keys and passwords.
pub const REQUIRED_COMMANDS: &[&str] = &["docker-registry", "openssl", "htpasswd"];

/// How clients must authenticate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// No authentication at all.
    #[default]
    Anonymous,
    /// HTTP Basic against an htpasswd file holding `user` with a bcrypt hash of `password`.
    Basic { user: String, password: String },
    /// Bearer tokens from the harness' token server, which accepts `user`/`password`.
    Token { user: String, password: String },
}

/// How to start a [`Registry`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// The authentication mode.
    pub auth: Auth,
    /// Serve https with a certificate from a CA made for this registry (see [`Registry::ca_dir`]).
    pub tls: bool,
}

/// What went wrong starting, pushing to or reading from the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A helper command (openssl, htpasswd, docker-registry) failed.
    #[error("{what}: {why}")]
    Command { what: String, why: String },
    /// An HTTP request could not be made.
    #[error("{what}: {}", causes(source))]
    Http {
        what: String,
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status.
    #[error("{what}: HTTP {status}: {body}")]
    Status {
        what: String,
        status: StatusCode,
        body: String,
    },
}

/// An error and its sources on one line: reqwest's own message ("error sending request")
/// only says what failed, its sources say why (connection refused, certificate unknown).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

impl RegistryError {
    fn io(what: impl AsRef<Path>, source: std::io::Error) -> Self {
        RegistryError::Io {
            what: what.as_ref().display().to_string(),
            source,
        }
    }

    fn command(what: &str, why: impl std::fmt::Display) -> Self {
        RegistryError::Command {
            what: what.to_owned(),
            why: why.to_string(),
        }
    }
}

/// The stdout of a finished helper program (`what` names it), or an error carrying its
/// stderr.
fn stdout_of(what: &str, output: std::io::Result<Output>) -> Result<Vec<u8>, RegistryError> {
    let output = output.map_err(|e| RegistryError::command(what, e))?;
    if !output.status.success() {
        let why = String::from_utf8_lossy(&output.stderr);
        return Err(RegistryError::command(what, why.trim()));
    }
    Ok(output.stdout)
}

/// How blobs are uploaded (distribution-spec "Pushing blobs").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upload {
    /// `POST` to open an upload, then a single `PUT ...?digest=` carrying the whole blob.
    Monolithic,
    /// `POST`, then one `PATCH` per chunk of this many bytes (with `Content-Range`), then an
    /// empty `PUT ...?digest=` to close it.
    Chunked(usize),
}

/// A running `docker-registry`; stopped and its directory removed on drop.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    host: String,
    config: RegistryConfig,
    ca_dir: Option<PathBuf>,
    token_server: Option<Arc<TokenServer>>,
    remote: Remote,
}

impl Registry {
    /// Starts a registry in the given mode and waits until `/v2/` answers (401 counts, in the
    /// auth modes). Panics with the server's output if it does not come up: a test that needs
    /// a registry cannot go on without one. Check [`REQUIRED_COMMANDS`] first.
    pub fn start(config: RegistryConfig) -> Registry {
        match Self::try_start(config) {
            Ok(registry) => registry,
            Err(e) => panic!("cannot start the test registry: {e}"),
        }
    }

    /// Like [`start`](Self::start), returning the error instead of panicking.
    pub fn try_start(config: RegistryConfig) -> Result<Registry, RegistryError> {
        let dir = tempfile::Builder::new()
            .prefix("test-registry-")
            .tempdir()
            .map_err(|e| RegistryError::io("temporary directory", e))?;
        let tls = config
            .tls
            .then(|| certs::make_tls(dir.path()))
            .transpose()?;
        let (auth_yaml, token_server) = prepare_auth(&config.auth, dir.path(), tls.as_ref())?;
        let tls_yaml = tls.as_ref().map(tls_section).unwrap_or_default();
        let client = http_client(tls.as_ref().map(|t| t.ca_dir.join("ca.crt")).as_deref())?;
        let scheme = if config.tls { "https" } else { "http" };
        let (child, host) = start_listening(dir.path(), &auth_yaml, &tls_yaml, &client, scheme)?;
        let credentials = match (&config.auth, &token_server) {
            (Auth::Basic { user, password }, _) => Credentials::Basic {
                user: user.clone(),
                password: password.clone(),
            },
            (Auth::Token { .. }, Some(server)) => Credentials::Token(Arc::clone(server)),
            _ => Credentials::None,
        };
        let remote = Remote::new(format!("{scheme}://{host}"), client, credentials);
        Ok(Registry {
            child,
            dir,
            host,
            config,
            ca_dir: tls.map(|t| t.ca_dir),
            token_server,
            remote,
        })
    }

    /// `127.0.0.1:PORT`, the host part of an image reference.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `http://127.0.0.1:PORT` or `https://...` in TLS mode.
    pub fn base_url(&self) -> String {
        self.remote.base_url().to_string()
    }

    /// In TLS mode, a directory holding only the test CA's `ca.crt` (for `--cert-dir`).
    pub fn ca_dir(&self) -> Option<&Path> {
        self.ca_dir.as_deref()
    }

    /// The mode this registry was started with.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The realm URL of the token server, in token mode.
    pub fn token_realm(&self) -> Option<&str> {
        self.token_server.as_deref().map(TokenServer::realm)
    }

    /// In token mode, whether requests without credentials get pull access (as Docker Hub
    /// gives for public repositories). Off by default: anonymous tokens grant nothing.
    pub fn set_anonymous_pull(&self, allowed: bool) {
        if let Some(server) = &self.token_server {
            server.set_anonymous_pull(allowed);
        }
    }

    /// How many requests the token server answered so far (0 outside token mode).
    pub fn token_requests(&self) -> usize {
        self.token_server
            .as_deref()
            .map_or(0, TokenServer::requests)
    }

    /// Everything the server logged so far, followed by the token server's lines
    /// (`token: GET ... -> STATUS`). Each request appears twice in the server's part: a
    /// `msg="response completed"` line and an access-log line (`"GET /v2/... HTTP/1.1" 200`);
    /// [`requests`](Self::requests) lists the latter alone.
    pub fn log(&self) -> String {
        let mut log =
            std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        if let Some(server) = &self.token_server {
            log.push_str(&server.log());
        }
        log
    }

    /// The requests the registry served so far, in order, as `METHOD PATH STATUS`
    /// (e.g. `GET /v2/library/busybox/blobs/sha256:... 200`), from its access log.
    pub fn requests(&self) -> Vec<String> {
        self.log().lines().filter_map(access_log_request).collect()
    }

    /// A client for this registry that authenticates as the mode requires (for pushing
    /// and reading back).
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The plain HTTP client (trusting the test CA in TLS mode) without credentials, for
    /// requests a test wants to make by hand.
    pub fn client(&self) -> &Client {
        self.remote.client()
    }

    /// `BASE_URL/v2/PATH`.
    pub fn url(&self, path: &str) -> String {
        self.remote.url(path)
    }
}

impl AsRef<Remote> for Registry {
    fn as_ref(&self) -> &Remote {
        &self.remote
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The token server and the temporary directory go with the fields.
    }
}

/// `METHOD PATH STATUS` from an access-log line `HOST - - [TIME] "METHOD PATH HTTP/1.1" STATUS ...`.
fn access_log_request(line: &str) -> Option<String> {
    let (_, rest) = line.split_once(" \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let mut words = request.split(' ');
    let (method, path) = (words.next()?, words.next()?);
    let status = rest.split(' ').next()?;
    status.parse::<u16>().ok()?;
    Some(format!("{method} {path} {status}"))
}

/// Starts the server and waits for it; when another process took the free port in the
/// meantime (tests run in parallel), tries again with another one.
fn start_listening(
    dir: &Path,
    auth_yaml: &str,
    tls_yaml: &str,
    client: &Client,
    scheme: &str,
) -> Result<(Child, String), RegistryError> {
    let mut attempts = 0;
    loop {
        let (mut child, host) = spawn_server(dir, auth_yaml, tls_yaml)?;
        let url = format!("{scheme}://{host}/v2/");
        match wait_until_answering(&mut child, client, &url, &dir.join("registry.log")) {
            Ok(()) => return Ok((child, host)),
            Err(e) if attempts < 3 && e.to_string().contains("address already in use") => {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Polls `GET /v2/` until any HTTP answer (200, or 401 in the auth modes), for up to 20 s;
/// fails early with the server's output if it exits.
fn wait_until_answering(
    child: &mut Child,
    client: &Client,
    url: &str,
    log: &Path,
) -> Result<(), RegistryError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = |why: &str| RegistryError::Command {
        what: "docker-registry serve".into(),
        why: format!(
            "{why}; its output:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    };
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(&format!("exited with {status} before answering")));
        }
        if client.get(url).send().is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(&format!("no answer on {url} after 20 s")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes the config and starts `docker-registry serve CONFIG` on a free port, its output
/// going to `registry.log`. Returns the child and `127.0.0.1:PORT`.
fn spawn_server(
    dir: &Path,
    auth_yaml: &str,
    tls_yaml: &str,
) -> Result<(Child, String), RegistryError> {
    let host = format!("127.0.0.1:{}", free_port()?);
    let storage = dir.join("storage");
    let config = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
         http:\n  addr: {host}\n  secret: test-only-secret\n{tls_yaml}\
         {auth_yaml}",
        storage = storage.display()
    );
    let config_path = dir.join("config.yml");
    std::fs::write(&config_path, config).map_err(|e| RegistryError::io(&config_path, e))?;
    let log_path = dir.join("registry.log");
    let log = File::create(&log_path).map_err(|e| RegistryError::io(&log_path, e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| RegistryError::io(&log_path, e))?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| RegistryError::command("docker-registry serve", e))?;
    Ok((child, host))
}

/// A port that was free a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> Result<u16, RegistryError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| RegistryError::io("127.0.0.1:0", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| RegistryError::io("127.0.0.1:0", e))?
        .port();
    Ok(port)
}

/// `htpasswd -Bbn USER PASSWORD` (bcrypt, the only hash distribution accepts) into `path`.
fn write_htpasswd(path: &Path, user: &str, password: &str) -> Result<(), RegistryError> {
    let line = stdout_of(
        &format!("htpasswd -B for '{user}'"),
        Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output(),
    )?;
    std::fs::write(path, line).map_err(|e| RegistryError::io(path, e))
}

/// Prepares what the auth mode needs (an htpasswd file; a signing certificate and a running
/// token server) and returns the `auth:` section of the registry config.
fn prepare_auth(
    auth: &Auth,
    dir: &Path,
    tls: Option<&certs::TlsFiles>,
) -> Result<(String, Option<Arc<TokenServer>>), RegistryError> {
    match auth {
        Auth::Anonymous => Ok((String::new(), None)),
        Auth::Basic { user, password } => {
            let htpasswd = dir.join("htpasswd");
            write_htpasswd(&htpasswd, user, password)?;
            let yaml = format!(
                "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                htpasswd.display()
            );
            Ok((yaml, None))
        }
        Auth::Token { user, password } => {
            let (key, cert) = certs::make_token_signer(dir)?;
            let server = TokenServer::start(user, password, key, &cert, tls)?;
            let yaml = format!(
                "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    \
                 rootcertbundle: {}\n",
                server.realm(),
                cert.display()
            );
            Ok((yaml, Some(Arc::new(server))))
        }
    }
}

/// The `http.tls` lines (indented under `http:`).
fn tls_section(tls: &certs::TlsFiles) -> String {
    format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        tls.server_cert.display(),
        tls.server_key.display()
    )
}

/// A blocking client that trusts `ca` if given, and never uses a proxy (loopback only).
fn http_client(ca: Option<&Path>) -> Result<Client, RegistryError> {
    let mut builder = Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| RegistryError::io(ca, e))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|source| RegistryError::Http {
            what: format!("{}", ca.display()),
            source,
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|source| RegistryError::Http {
        what: "http client".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_lines_become_requests() {
        let line = r#"127.0.0.1 - - [29/Nov/2026:15:21:59 +0000] "GET /v2/ HTTP/1.1" 200 2 "" """#;
        assert_eq!(access_log_request(line).as_deref(), Some("GET /v2/ 200"));
        let info = r#"time="2026" level=info msg="response completed" http.request.uri=/v2/"#;
        assert_eq!(access_log_request(info), None);
    }
}
