//! A distribution-spec client just big enough for the fixtures: push blobs (monolithic or
//! chunked) and manifests, read them back.

use std::sync::Arc;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{StatusCode, Url};

use super::token::TokenServer;
use super::{RegistryError, Upload};

/// How a [`Remote`] authenticates.
pub(super) enum Credentials {
    None,
    Basic {
        user: String,
        password: String,
    },
    /// Bearer tokens minted by the harness' own token server for the configured user.
    Token(Arc<TokenServer>),
}

/// A registry endpoint and how to talk to it: the [`Registry`](super::Registry) fixture's
/// own, or [`Remote::anonymous`] for any registry reachable over plain http or trusted https.
pub struct Remote {
    base_url: String,
    client: Client,
    credentials: Credentials,
}

impl AsRef<Remote> for Remote {
    fn as_ref(&self) -> &Remote {
        self
    }
}

impl Remote {
    /// A client for `base_url` (`http://HOST:PORT`) without credentials.
    pub fn anonymous(base_url: &str) -> Result<Remote, RegistryError> {
        Ok(Remote::new(
            base_url.to_string(),
            super::http_client(None)?,
            Credentials::None,
        ))
    }

    pub(super) fn new(base_url: String, client: Client, credentials: Credentials) -> Remote {
        Remote {
            base_url: base_url.trim_end_matches('/').to_string(),
            client,
            credentials,
        }
    }

    /// `http(s)://HOST:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The HTTP client, without credentials. Use [`authorize`](Self::authorize) to add them.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `BASE_URL/v2/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/v2/{}", self.base_url, path.trim_start_matches('/'))
    }

    /// Adds the credentials the mode needs to a request on `repo`: Basic, or a bearer token
    /// for `repository:REPO:pull,push` minted by the harness' token server for its user
    /// directly (the fixture skips the 401 challenge and the token request a client makes;
    /// tests of that flow make them by hand or run a real client).
    pub fn authorize(
        &self,
        request: RequestBuilder,
        repo: &str,
    ) -> Result<RequestBuilder, RegistryError> {
        Ok(match &self.credentials {
            Credentials::None => request,
            Credentials::Basic { user, password } => request.basic_auth(user, Some(password)),
            Credentials::Token(server) => {
                let scope = format!("repository:{repo}:pull,push");
                request.bearer_auth(server.token_for(&scope)?)
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
        let location = self.location(&what, &response)?;
        let (mut location, body) = match upload {
            Upload::Monolithic => (location, data.to_vec()),
            Upload::Chunked(size) => {
                let last = self.patch_chunks(&what, repo, location, data, size)?;
                (last, Vec::new())
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

    /// Sends `data` in PATCHes of `size` bytes with their `Content-Range`, each to the
    /// Location the one before returned; returns the last Location, where the PUT goes.
    fn patch_chunks(
        &self,
        what: &str,
        repo: &str,
        mut location: Url,
        data: &[u8],
        size: usize,
    ) -> Result<Url, RegistryError> {
        for (offset, length) in chunk_ranges(data.len(), size) {
            let request = self
                .client
                .patch(location)
                .header("Content-Type", "application/octet-stream")
                .header(
                    "Content-Range",
                    format!("{}-{}", offset, offset + length - 1),
                )
                .body(data[offset..offset + length].to_vec());
            let response = self.send(what, request, repo, StatusCode::ACCEPTED)?;
            location = self.location(what, &response)?;
        }
        Ok(location)
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
        let base = Url::parse(&self.base_url).ok();
        header
            .and_then(|location| base?.join(location).ok())
            .ok_or_else(|| RegistryError::Command {
                what: what.to_string(),
                why: "no usable Location header".into(),
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_blob() {
        assert_eq!(chunk_ranges(10, 4), [(0, 4), (4, 4), (8, 2)]);
        assert_eq!(chunk_ranges(0, 4), []);
    }
}
