//! Image references, normalised the way docker and containers/image do
//! (distribution's `reference` package, `normalize.go`).
//!
//! `alpine` means `docker.io/library/alpine:latest`. The first path component
//! is a registry host only when it looks like one: it contains a `.` or a `:`,
//! is `localhost`, or has an uppercase letter (repository names never do).
//! Everything is checked before a single request is made, and the error names
//! the part that is wrong.

use std::fmt;
use std::net::IpAddr;

use oci_spec::image::Digest;

use crate::digest::parse_sha256;

/// Where Docker Hub's images are named (`docker.io/library/alpine`) ...
pub const DOCKER_HUB: &str = "docker.io";
/// ... and where its registry API is actually served.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed `[HOST[:PORT]/]NAME[:TAG][@sha256:HEX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `quay.io`, `localhost:5000`, `[::1]:5000`.
    pub registry: String,
    /// `library/alpine`, `a/b/c`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference '{reference}': {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

impl Reference {
    /// Parses a reference, with or without the `docker://` transport prefix.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let fail = |reason: String| ReferenceError {
            reference: input.to_owned(),
            reason,
        };
        let text = input.strip_prefix("docker://").unwrap_or(input);
        if let Some((transport, _)) = text.split_once(':') {
            if !text.contains("//") && is_other_transport(transport) {
                return Err(fail(format!(
                    "transport '{transport}:' is not supported as a source (only docker://)"
                )));
            }
        }
        if text.is_empty() {
            return Err(fail("empty reference".into()));
        }
        if text.len() > 4096 {
            return Err(fail("longer than 4096 characters".into()));
        }

        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                let digest = parse_sha256(digest).map_err(|reason| fail(reason.to_string()))?;
                (rest, Some(digest))
            }
            None => (text, None),
        };

        // The tag is after the last ':' that follows the last '/', so that
        // `localhost:5000/a` has a port and no tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(fail)?;
        }

        let (registry, remainder) = match name.split_once('/') {
            Some((first, remainder)) if looks_like_host(first) => (first, remainder),
            _ => (DOCKER_HUB, name),
        };
        check_host(registry).map_err(fail)?;
        let registry = match registry {
            "index.docker.io" | DOCKER_HUB_API => DOCKER_HUB,
            other => other,
        };
        let repository = if registry == DOCKER_HUB && !remainder.contains('/') {
            format!("library/{remainder}")
        } else {
            remainder.to_owned()
        };
        check_repository(&repository).map_err(fail)?;
        if registry.len() + 1 + repository.len() > 255 {
            return Err(fail("name longer than 255 characters".into()));
        }

        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            (tag, _) => tag.map(str::to_owned),
        };
        Ok(Reference {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// What the manifest endpoint is asked for: the digest when there is one
    /// (it pins the content), else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The host the registry API is served from.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// Whether the registry is on this machine (`localhost`, 127.0.0.0/8,
    /// `::1`), where plain http is allowed, as docker does.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(host_without_port(&self.registry))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `localhost:5000` -> `localhost`, `[::1]:5000` -> `::1`.
pub fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.split(':').next().unwrap_or(host)
}

/// `localhost`, an address in 127.0.0.0/8, or `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_other_transport(word: &str) -> bool {
    matches!(
        word,
        "oci" | "oci-archive" | "dir" | "docker-archive" | "docker-daemon" | "containers-storage"
    )
}

fn looks_like_host(component: &str) -> bool {
    component.contains(['.', ':'])
        || component == "localhost"
        || component.chars().any(|c| c.is_ascii_uppercase())
}

/// `[\w][\w.-]{0,127}`
fn check_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let valid = tag.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "tag '{tag}' must be 1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        ))
    }
}

/// A host name or IP address, with an optional port.
fn check_host(host: &str) -> Result<(), String> {
    let bad = || Err(format!("registry host '{host}' is not a valid host[:port]"));
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((ip6, after)) = rest.split_once(']') else {
            return bad();
        };
        if ip6.parse::<std::net::Ipv6Addr>().is_err() {
            return bad();
        }
        match after {
            "" => return Ok(()),
            after => ("ok", after.strip_prefix(':').unwrap_or("x")),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, port),
            None => (host, "0"),
        }
    };
    if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) || port.parse::<u16>().is_err()
    {
        return bad();
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_empty() || !name.split('.').all(label_ok) {
        return bad();
    }
    Ok(())
}

/// Path components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, joined by `/`.
fn check_repository(repository: &str) -> Result<(), String> {
    for component in repository.split('/') {
        if !valid_component(component) {
            return Err(if component.is_empty() {
                format!("repository '{repository}' has an empty path component")
            } else if component.chars().any(|c| c.is_ascii_uppercase()) {
                format!("repository name '{repository}' must be lowercase")
            } else {
                format!(
                    "repository path component '{component}' must be lowercase letters and digits, \
                     separated by '.', '_', '__' or dashes"
                )
            });
        }
    }
    Ok(())
}

fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or any number of '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let run = &component[start..i];
        let ok = matches!(run, "." | "_" | "__") || run.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        // input, registry, repository, tag, has digest
        let cases: &[(&str, &str, &str, Option<&str>, bool)] = &[
            (
                "alpine",
                "docker.io",
                "library/alpine",
                Some("latest"),
                false,
            ),
            (
                "docker://alpine",
                "docker.io",
                "library/alpine",
                Some("latest"),
                false,
            ),
            (
                "alpine:3.20",
                "docker.io",
                "library/alpine",
                Some("3.20"),
                false,
            ),
            (
                "library/alpine",
                "docker.io",
                "library/alpine",
                Some("latest"),
                false,
            ),
            (
                "docker.io/alpine",
                "docker.io",
                "library/alpine",
                Some("latest"),
                false,
            ),
            (
                "index.docker.io/alpine",
                "docker.io",
                "library/alpine",
                Some("latest"),
                false,
            ),
            (
                "registry-1.docker.io/alpine:edge",
                "docker.io",
                "library/alpine",
                Some("edge"),
                false,
            ),
            (
                "docker.io/user/app",
                "docker.io",
                "user/app",
                Some("latest"),
                false,
            ),
            ("localhost/a", "localhost", "a", Some("latest"), false),
            (
                "localhost:5000/a/b:tag",
                "localhost:5000",
                "a/b",
                Some("tag"),
                false,
            ),
            (
                "127.0.0.1:5000/busybox:1",
                "127.0.0.1:5000",
                "busybox",
                Some("1"),
                false,
            ),
            ("[::1]:5000/x", "[::1]:5000", "x", Some("latest"), false),
            ("quay.io/a/b/c", "quay.io", "a/b/c", Some("latest"), false),
            ("Registry/a", "Registry", "a", Some("latest"), false),
            (
                "ghcr.io/a-b/c__d.e:v1_2-3",
                "ghcr.io",
                "a-b/c__d.e",
                Some("v1_2-3"),
                false,
            ),
            ("a--b", "docker.io", "library/a--b", Some("latest"), false),
        ];
        for &(input, registry, repository, tag, _) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry, registry, "{input}");
            assert_eq!(r.repository, repository, "{input}");
            assert_eq!(r.tag.as_deref(), tag, "{input}");
            assert!(r.digest.is_none(), "{input}");
        }
    }

    #[test]
    fn digests_pin_the_manifest() {
        let r = Reference::parse(&format!("host.example/ns/name@sha256:{HEX}")).unwrap();
        assert_eq!(r.registry, "host.example");
        assert_eq!(r.repository, "ns/name");
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), format!("sha256:{HEX}"));

        let both = Reference::parse(&format!("alpine:3@sha256:{HEX}")).unwrap();
        assert_eq!(both.tag.as_deref(), Some("3"));
        assert_eq!(both.manifest_ref(), format!("sha256:{HEX}"));
        assert_eq!(
            both.to_string(),
            format!("docker.io/library/alpine:3@sha256:{HEX}")
        );
    }

    #[test]
    fn rejects_with_the_bad_part_named() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("alpine:", "tag ''"),
            ("alpine:-x", "tag '-x'"),
            ("alpine:a/b", "registry host 'alpine:a'"), // a ':' before the last '/' makes a host
            ("a//b", "empty path component"),
            ("docker.io/Alpine", "must be lowercase"),
            ("docker.io/a_-b", "'a_-b'"),
            ("docker.io/a/", "empty path component"),
            ("host:99999/a", "registry host 'host:99999'"),
            ("host:/a", "registry host"),
            ("-host.io/a", "registry host"),
            ("alpine@sha256:abc", "sha256"),
            ("alpine@sha256:../../x", "sha256"),
            (&format!("alpine@sha512:{HEX}"), "sha256"),
            (&format!("alpine@sha256:{}", HEX.to_uppercase()), "sha256"),
            ("oci:dir:tag", "transport 'oci:'"),
        ];
        for &(input, needle) in cases {
            let err = Reference::parse(input).expect_err(input).to_string();
            assert!(err.contains(needle), "{input}: {err}");
            assert!(err.starts_with("invalid image reference"), "{input}: {err}");
        }
    }

    #[test]
    fn loopback_registries() {
        for (input, loopback) in [
            ("localhost:5000/a", true),
            ("127.0.0.1:5000/a", true),
            ("127.9.9.9/a", true),
            ("[::1]:5000/a", true),
            ("10.0.0.1:5000/a", false),
            ("alpine", false),
        ] {
            assert_eq!(
                Reference::parse(input).unwrap().is_loopback(),
                loopback,
                "{input}"
            );
        }
    }

    /// A tiny deterministic generator (xorshift), so the property test needs
    /// no extra crate and fails reproducibly.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn any_input_parses_or_fails_cleanly_and_round_trips() {
        let alphabet: Vec<char> = "aZ09._-:/@ \u{e9}\0sha256localhost".chars().collect();
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..50_000 {
            let len = (xorshift(&mut state) % 40) as usize;
            let mut input: String = (0..len)
                .map(|_| alphabet[(xorshift(&mut state) % alphabet.len() as u64) as usize])
                .collect();
            if xorshift(&mut state) % 4 == 0 {
                input.push_str(&format!("@sha256:{HEX}"));
            }
            if let Ok(reference) = Reference::parse(&input) {
                // What we print parses back to the same reference.
                let again = Reference::parse(&reference.to_string()).unwrap();
                assert_eq!(again, reference, "{input:?}");
            }
        }
    }
}
