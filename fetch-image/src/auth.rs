//! Registry authentication (distribution-spec and Docker's token spec,
//! `docs/spec/auth/token.md`).
//!
//! A registry that wants credentials answers 401 with a `WWW-Authenticate`
//! challenge. `Basic realm="..."` means: send `Authorization: Basic
//! base64(user:password)` with every request. `Bearer realm="URL",
//! service="S",scope="repository:NAME:pull"` means: ask `URL?service=S&scope=...`
//! (with Basic credentials if there are any, anonymously otherwise) for a
//! token, and send `Authorization: Bearer TOKEN` from then on.

use std::net::IpAddr;

use base64::Engine as _;
use reqwest::Url;

/// A user name and password, from `--creds` or an auth file.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <password>)", self.username)
    }
}

impl Credentials {
    /// `USER:PASSWORD` as `--creds` takes it; `USER` alone gives `None`
    /// for the password (to be asked for).
    pub fn parse(text: &str) -> Option<(String, Option<String>)> {
        let (username, password) = match text.split_once(':') {
            Some((user, password)) => (user, Some(password.to_owned())),
            None => (text, None),
        };
        if username.is_empty() {
            return None;
        }
        Some((username.to_owned(), password))
    }

    /// The value of an `Authorization: Basic ...` header.
    pub fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// Asks for a password on the terminal (`/dev/tty`), echo off, as skopeo
/// does for `--creds USER` without one.
pub fn prompt_password(username: &str) -> std::io::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::{BufRead as _, Write as _};

    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let saved = tcgetattr(&tty).map_err(std::io::Error::from)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    (&tty).write_all(format!("Password for {username}: ").as_bytes())?;
    tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).map_err(std::io::Error::from)?;
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    // Echo back on whatever happened.
    let restored = tcsetattr(&tty, SetArg::TCSAFLUSH, &saved);
    (&tty).write_all(b"\n")?;
    read?;
    restored.map_err(std::io::Error::from)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Scheme k="v", k2=v2` (RFC 7235 auth-params, quoted or not).
/// Returns `None` for schemes we do not speak.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ','))
            .collect::<String>()
            .trim()
            .to_owned();
        if key.is_empty() || chars.next() != Some('=') {
            break;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_owned();
        }
        params.push((key, value));
    }
    params
}

/// Why a token realm is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing token realm '{realm}': {reason}")]
pub struct RealmError {
    pub realm: String,
    pub reason: &'static str,
}

/// Checks a realm a registry told us to send credentials to: it must be an
/// http(s) URL, not at a link-local, unspecified or multicast address (cloud
/// metadata services live at 169.254.169.254), and plain http only where
/// plain http is allowed at all.
pub fn check_realm(realm: &str, allow_http: bool) -> Result<Url, RealmError> {
    let fail = |reason| RealmError {
        realm: realm.chars().take(200).collect(),
        reason,
    };
    let url = Url::parse(realm).map_err(|_| fail("not a URL"))?;
    match url.scheme() {
        "https" => {}
        "http"
            if allow_http
                || url
                    .host_str()
                    .is_some_and(crate::reference::is_loopback_host) => {}
        "http" => return Err(fail("plain http for credentials to a remote host")),
        _ => return Err(fail("only http(s) realms are allowed")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail("credentials embedded in the URL"));
    }
    let host = url.host_str().ok_or_else(|| fail("no host"))?;
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        let odd = match ip {
            IpAddr::V4(v4) => {
                v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()
            }
            IpAddr::V6(v6) => {
                (v6.segments()[0] & 0xffc0) == 0xfe80 || v6.is_unspecified() || v6.is_multicast()
            }
        };
        if odd {
            return Err(fail("link-local, unspecified or multicast address"));
        }
    }
    Ok(url)
}

/// The token request URL: the realm with `service` and `scope` added.
pub fn token_url(mut realm: Url, service: Option<&str>, scope: &str) -> Url {
    {
        let mut query = realm.query_pairs_mut();
        if let Some(service) = service {
            query.append_pair("service", service);
        }
        query.append_pair("scope", scope);
    }
    realm
}

/// The token in a token server's JSON answer (`token`, or OAuth2's
/// `access_token`).
pub fn parse_token(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    ["token", "access_token"]
        .iter()
        .filter_map(|key| value.get(key)?.as_str())
        .find(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=http://127.0.0.1:1/t, service="a \"b\"""#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: Some("a \"b\"".into()),
                scope: None,
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn refuses_odd_realms() {
        assert!(check_realm("https://auth.docker.io/token", false).is_ok());
        assert!(check_realm("http://127.0.0.1:5000/token", false).is_ok());
        assert!(check_realm("http://auth.example/token", true).is_ok());
        for bad in [
            "file:///etc/passwd",
            "http://auth.example/token",
            "https://169.254.169.254/latest",
            "https://[fe80::1]/t",
            "https://0.0.0.0/t",
            "https://user:pw@auth.example/t",
            "gopher://x/",
            "not a url",
        ] {
            assert!(check_realm(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_and_tokens() {
        let (username, password) = Credentials::parse("user:pa:ss").unwrap();
        assert_eq!(password.as_deref(), Some("pa:ss"));
        let c = Credentials {
            username,
            password: password.unwrap(),
        };
        assert_eq!(c.basic_header(), "Basic dXNlcjpwYTpzcw==");
        assert_eq!(Credentials::parse("user"), Some(("user".to_owned(), None)));
        assert!(Credentials::parse(":pw").is_none());
        assert_eq!(parse_token(br#"{"token":"abc"}"#).as_deref(), Some("abc"));
        assert_eq!(
            parse_token(br#"{"access_token":"xyz"}"#).as_deref(),
            Some("xyz")
        );
        assert_eq!(parse_token(br#"{"token":"a\nb"}"#), None);
        assert_eq!(parse_token(b"garbage"), None);
    }
}
