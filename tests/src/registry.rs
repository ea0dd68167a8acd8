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
mod token;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{StatusCode, Url};

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
    #[error("{what}: {source}")]
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

impl RegistryError {
    fn io(what: impl AsRef<Path>, source: std::io::Error) -> Self {
        RegistryError::Io {
            what: what.as_ref().display().to_string(),
            source,
        }
    }
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
    token_server: Option<TokenServer>,
    client: Client,
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
        let tls = if config.tls {
            Some(certs::make_tls(dir.path())?)
        } else {
            None
        };
        let token_server = match &config.auth {
            Auth::Token { user, password } => {
                let (key, cert) = certs::make_token_signer(dir.path())?;
                Some((TokenServer::start(user, password, key, &cert)?, cert))
            }
            _ => None,
        };
        if let Auth::Basic { user, password } = &config.auth {
            write_htpasswd(&dir.path().join("htpasswd"), user, password)?;
        }
        let auth_yaml = auth_section(&config.auth, dir.path(), token_server.as_ref());
        let tls_yaml = tls.as_ref().map(tls_section).unwrap_or_default();
        let client = http_client(tls.as_ref().map(|t| t.ca_dir.join("ca.crt")).as_deref())?;
        let (child, host) = spawn_server(dir.path(), &auth_yaml, &tls_yaml)?;
        let mut registry = Registry {
            child,
            dir,
            host,
            config,
            ca_dir: tls.map(|t| t.ca_dir),
            token_server: token_server.map(|(server, _)| server),
            client,
        };
        registry.wait_until_answering()?;
        Ok(registry)
    }

    /// `127.0.0.1:PORT`, the host part of an image reference.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `http://127.0.0.1:PORT` or `https://...` in TLS mode.
    pub fn base_url(&self) -> String {
        let scheme = if self.config.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
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
        self.token_server.as_ref().map(TokenServer::realm)
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
        self.token_server.as_ref().map_or(0, TokenServer::requests)
    }

    /// Everything the server logged so far (one access-log line per request), followed by
    /// the token server's lines (`token: GET ... -> STATUS`).
    pub fn log(&self) -> String {
        let mut log =
            std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        if let Some(server) = &self.token_server {
            log.push_str(&server.log());
        }
        log
    }

    /// A client that trusts the test CA (in TLS mode) and nothing else changed: no
    /// credentials. Use [`authorize`](Self::authorize) to add them.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `BASE_URL/v2/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/v2/{}", self.base_url(), path.trim_start_matches('/'))
    }

    /// Adds the credentials the mode needs to a request on `repo`: Basic, or a bearer token
    /// for `repository:REPO:pull,push` fetched from the token server with the user's
    /// credentials (skipping the 401 round trip the distribution client would make).
    pub fn authorize(
        &self,
        request: RequestBuilder,
        repo: &str,
    ) -> Result<RequestBuilder, RegistryError> {
        Ok(match &self.config.auth {
            Auth::Anonymous => request,
            Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
            Auth::Token { .. } => {
                let scope = format!("repository:{repo}:pull,push");
                match &self.token_server {
                    Some(server) => request.bearer_auth(server.token_for(&scope)?),
                    None => request,
                }
            }
        })
    }

    /// Uploads one blob to `repo` (distribution-spec "Pushing blobs"), monolithic or chunked.
    pub fn upload_blob(
        &self,
        repo: &str,
        digest: &str,
        data: &[u8],
        upload: Upload,
    ) -> Result<(), RegistryError> {
        let what = format!("upload of {digest} to {repo}");
        let start = self.url(&format!("{repo}/blobs/uploads/"));
        let response = self.send(&what, self.client.post(&start), repo, StatusCode::ACCEPTED)?;
        let mut location = self.location(&what, &response)?;
        let body = match upload {
            Upload::Monolithic => data.to_vec(),
            Upload::Chunked(size) => {
                for (offset, chunk) in chunk_ranges(data.len(), size) {
                    let request = self
                        .client
                        .patch(location.clone())
                        .header("Content-Type", "application/octet-stream")
                        .header(
                            "Content-Range",
                            format!("{}-{}", offset, offset + chunk - 1),
                        )
                        .body(data[offset..offset + chunk].to_vec());
                    let response = self.send(&what, request, repo, StatusCode::ACCEPTED)?;
                    location = self.location(&what, &response)?;
                }
                Vec::new()
            }
        };
        location.query_pairs_mut().append_pair("digest", digest);
        let request = self
            .client
            .put(location)
            .header("Content-Type", "application/octet-stream")
            .body(body);
        self.send(&what, request, repo, StatusCode::CREATED)
            .map(drop)
    }

    /// Stores a manifest (or index) under `reference` (a tag or a digest) with its media type
    /// as Content-Type.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        manifest: &[u8],
    ) -> Result<(), RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let request = self
            .client
            .put(self.url(&format!("{repo}/manifests/{reference}")))
            .header("Content-Type", media_type)
            .body(manifest.to_vec());
        self.send(&what, request, repo, StatusCode::CREATED)
            .map(drop)
    }

    /// Fetches a manifest by tag or digest, accepting every OCI and Docker manifest type;
    /// returns its Content-Type and bytes.
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(String, Vec<u8>), RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let accept = [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
        .join(", ");
        let request = self
            .client
            .get(self.url(&format!("{repo}/manifests/{reference}")))
            .header("Accept", accept);
        let response = self.send(&what, request, repo, StatusCode::OK)?;
        let content_type = response
            .headers()
            .get("Content-Type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = response
            .bytes()
            .map_err(|source| RegistryError::Http { what, source })?;
        Ok((content_type, bytes.to_vec()))
    }

    /// Fetches a blob's bytes.
    pub fn get_blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {digest} of {repo}");
        let request = self.client.get(self.url(&format!("{repo}/blobs/{digest}")));
        let response = self.send(&what, request, repo, StatusCode::OK)?;
        let bytes = response
            .bytes()
            .map_err(|source| RegistryError::Http { what, source })?;
        Ok(bytes.to_vec())
    }

    /// Sends `request` with credentials; anything but `expected` is an error with the body.
    fn send(
        &self,
        what: &str,
        request: RequestBuilder,
        repo: &str,
        expected: StatusCode,
    ) -> Result<Response, RegistryError> {
        let response =
            self.authorize(request, repo)?
                .send()
                .map_err(|source| RegistryError::Http {
                    what: what.to_string(),
                    source,
                })?;
        if response.status() != expected {
            let status = response.status();
            let body = response.text().unwrap_or_default();
            return Err(RegistryError::Status {
                what: what.to_string(),
                status,
                body,
            });
        }
        Ok(response)
    }

    /// The upload URL from a `Location` header (relative ones are resolved against the base).
    fn location(&self, what: &str, response: &Response) -> Result<Url, RegistryError> {
        let header = response
            .headers()
            .get("Location")
            .and_then(|v| v.to_str().ok());
        let base = Url::parse(&self.base_url()).ok();
        header
            .and_then(|location| base?.join(location).ok())
            .ok_or_else(|| RegistryError::Command {
                what: what.to_string(),
                why: "no usable Location header".into(),
            })
    }

    /// Polls `GET /v2/` until any HTTP answer (200, or 401 in the auth modes), for up to 20 s;
    /// fails early with the server's output if it exits.
    fn wait_until_answering(&mut self) -> Result<(), RegistryError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = self.url("");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let why = format!(
                    "exited with {status} before answering; its output:\n{}",
                    self.log()
                );
                return Err(RegistryError::Command {
                    what: "docker-registry serve".into(),
                    why,
                });
            }
            if self.client.get(&url).send().is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let why = format!("no answer on {url} after 20 s; its output:\n{}", self.log());
                return Err(RegistryError::Command {
                    what: "docker-registry serve".into(),
                    why,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The token server and the temporary directory go with the fields.
    }
}

/// (offset, length) of each chunk of `total` bytes cut into `size`-byte pieces.
fn chunk_ranges(total: usize, size: usize) -> Vec<(usize, usize)> {
    let size = size.max(1);
    (0..total)
        .step_by(size)
        .map(|offset| (offset, size.min(total - offset)))
        .collect()
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
        .map_err(|e| RegistryError::Command {
            what: "docker-registry serve".into(),
            why: e.to_string(),
        })?;
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
    let what = format!("htpasswd -B for '{user}'");
    let output = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .map_err(|e| RegistryError::Command {
            what: what.clone(),
            why: e.to_string(),
        })?;
    if !output.status.success() {
        let why = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(RegistryError::Command { what, why });
    }
    std::fs::write(path, output.stdout).map_err(|e| RegistryError::io(path, e))
}

/// The `auth:` section of the registry config for the mode.
fn auth_section(auth: &Auth, dir: &Path, token: Option<&(TokenServer, PathBuf)>) -> String {
    match (auth, token) {
        (Auth::Basic { .. }, _) => format!(
            "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
            dir.join("htpasswd").display()
        ),
        (Auth::Token { .. }, Some((server, cert))) => format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    \
             rootcertbundle: {}\n",
            server.realm(),
            cert.display()
        ),
        _ => String::new(),
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
    fn chunks_cover_the_blob() {
        assert_eq!(chunk_ranges(10, 4), [(0, 4), (4, 4), (8, 2)]);
        assert_eq!(chunk_ranges(0, 4), []);
    }
}
