//! Credentials from the auth files podman, skopeo and docker write
//! (containers-auth.json(5), docker's `config.json`): a JSON object whose
//! `auths` map has, per registry, `{"auth": base64("user:password")}`.
//!
//! Keys are `registry`, `registry/namespace/repo` (podman: the longest match
//! wins), or docker's old URL form `https://index.docker.io/v1/`.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::auth::Credentials;
use crate::reference::{Reference, DOCKER_HUB};

/// Why an auth file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read auth file '{}'", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth file '{}' is not valid JSON", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("auth file '{}': the entry for '{key}' has an 'auth' value that is not base64 of USER:PASSWORD", path.display())]
    BadEntry { path: PathBuf, key: String },
}

/// The standard places, in the order containers/image searches them
/// (after `--authfile`, which replaces the search).
pub fn default_auth_files() -> Vec<PathBuf> {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let home = env("HOME").map(PathBuf::from);
    let mut files = Vec::new();
    if let Some(path) = env("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(path));
    }
    if let Some(dir) = env("XDG_RUNTIME_DIR") {
        files.push(Path::new(&dir).join("containers/auth.json"));
    }
    match (env("XDG_CONFIG_HOME"), &home) {
        (Some(dir), _) => files.push(Path::new(&dir).join("containers/auth.json")),
        (None, Some(home)) => files.push(home.join(".config/containers/auth.json")),
        (None, None) => {}
    }
    if let Some(dir) = env("DOCKER_CONFIG") {
        files.push(Path::new(&dir).join("config.json"));
    }
    if let Some(home) = &home {
        files.push(home.join(".docker/config.json"));
    }
    files
}

/// Credentials for `reference` from the first of `files` that has an entry
/// for it. Missing files are skipped; a file that exists but cannot be read
/// or parsed is an error (silently pulling anonymously would hide it).
pub fn lookup(
    files: &[PathBuf],
    reference: &Reference,
) -> Result<Option<(Credentials, PathBuf)>, AuthFileError> {
    for path in files {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(AuthFileError::Read {
                    path: path.clone(),
                    source,
                })
            }
        };
        if let Some(credentials) = find_in(&text, path, reference)? {
            return Ok(Some((credentials, path.clone())));
        }
    }
    Ok(None)
}

/// Looks `reference` up in the text of one auth file.
pub fn find_in(
    text: &[u8],
    path: &Path,
    reference: &Reference,
) -> Result<Option<Credentials>, AuthFileError> {
    let file: serde_json::Value =
        serde_json::from_slice(text).map_err(|source| AuthFileError::Json {
            path: path.to_owned(),
            source,
        })?;
    let Some(auths) = file.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    // The most specific key first: host/ns/repo, host/ns, host.
    let mut wanted = vec![format!("{}/{}", reference.registry, reference.repository)];
    let mut scope = reference.repository.as_str();
    while let Some((parent, _)) = scope.rsplit_once('/') {
        wanted.push(format!("{}/{}", reference.registry, parent));
        scope = parent;
    }
    wanted.push(reference.registry.clone());

    for want in &wanted {
        let entry = auths.iter().find(|(key, _)| normalize_key(key) == *want);
        let Some((key, entry)) = entry else { continue };
        let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()) else {
            continue; // an entry kept by a credential helper: not ours to read
        };
        let bad = || AuthFileError::BadEntry {
            path: path.to_owned(),
            key: key.clone(),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
        if username.is_empty() {
            return Err(bad());
        }
        return Ok(Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        }));
    }
    Ok(None)
}

/// `https://index.docker.io/v1/` -> `docker.io`; `http://host:5000` -> `host:5000`.
fn normalize_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let key = key
        .strip_suffix("/v1/")
        .or_else(|| key.strip_suffix("/v2/"))
        .or_else(|| key.strip_suffix("/v1"))
        .or_else(|| key.strip_suffix("/v2"))
        .unwrap_or(key)
        .trim_end_matches('/');
    let (host, path) = key.split_once('/').unwrap_or((key, ""));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        host => host,
    };
    if path.is_empty() {
        host.to_owned()
    } else {
        format!("{host}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(file: &str, image: &str) -> Option<(String, String)> {
        let reference = Reference::parse(image).unwrap();
        find_in(file.as_bytes(), Path::new("auth.json"), &reference)
            .unwrap()
            .map(|c| (c.username, c.password))
    }

    #[test]
    fn finds_entries_in_both_formats() {
        // "user:pw" and "repo:secret"
        let file = r#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwdw=="},
            "localhost:5000/team/app": {"auth": "cmVwbzpzZWNyZXQ="},
            "http://localhost:5000": {"auth": "dXNlcjpwdw=="},
            "quay.io": {"identitytoken": "x"}
        }, "credsStore": "desktop"}"#;
        let user = Some(("user".to_owned(), "pw".to_owned()));
        let repo = Some(("repo".to_owned(), "secret".to_owned()));
        assert_eq!(creds(file, "alpine"), user);
        assert_eq!(creds(file, "docker.io/x/y"), user);
        assert_eq!(creds(file, "localhost:5000/team/app:1"), repo);
        assert_eq!(creds(file, "localhost:5000/other"), user);
        assert_eq!(creds(file, "quay.io/a/b"), None);
        assert_eq!(creds(file, "ghcr.io/a/b"), None);
        assert_eq!(creds("{}", "alpine"), None);
    }

    #[test]
    fn bad_files_are_errors() {
        let reference = Reference::parse("alpine").unwrap();
        let path = Path::new("auth.json");
        assert!(find_in(b"{not json", path, &reference).is_err());
        let bad = r#"{"auths":{"docker.io":{"auth":"!!!"}}}"#;
        let err = find_in(bad.as_bytes(), path, &reference).unwrap_err();
        assert!(err.to_string().contains("'docker.io'"), "{err}");
    }
}
