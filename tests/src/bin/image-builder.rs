//! `image-builder`: writes the project's busybox test image (see `tests::busybox`) into an
//! OCI layout or pushes it to a registry, so `demo.sh --offline` has an image to fetch
//! without internet access.
//!
//! ```text
//! image-builder busybox --oci DIR[:TAG]                 # like: skopeo copy ... oci:DIR:TAG
//! image-builder busybox --push HOST:PORT/REPO[:TAG]     # plain http, loopback registries only
//!   --docker    Docker schema 2 media types instead of OCI
//! ```
//! Prints the manifest digest on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use tests::busybox::busybox_image;
use tests::image::MediaTypes;
use tests::registry::Remote;

const USAGE: &str =
    "usage: image-builder busybox (--oci DIR[:TAG] | --push HOST:PORT/REPO[:TAG]) [--docker]

Builds a two-layer image from this machine's static busybox (/bin/busybox, package
busybox-static): the applet links, /etc/passwd and /etc/group, a whiteout in the
second layer, Cmd [\"/bin/sh\"]. Writes it into an OCI image layout, or pushes it
over plain http to a registry on this machine (127.0.0.0/8, localhost, ::1).
TAG defaults to latest. Prints the manifest digest.";

/// Where the image goes.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// An OCI layout directory and the tag to give the image in its index.json.
    Oci { dir: PathBuf, tag: String },
    /// `HOST:PORT`, repository and tag on a loopback registry.
    Push {
        host: String,
        repo: String,
        tag: String,
    },
}

/// The parsed command line.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    destination: Destination,
    media_types: MediaTypes,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(&args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("image-builder: {e}\nRun 'image-builder --help' for usage.");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(digest) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("image-builder: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the image and sends it where the arguments say; returns the manifest digest.
fn run(args: &Args) -> Result<String, String> {
    if !std::path::Path::new(tests::busybox::BUSYBOX).is_file() {
        return Err(format!(
            "{} not found: install the busybox-static package",
            tests::busybox::BUSYBOX
        ));
    }
    let image = busybox_image().media_types(args.media_types).build();
    match &args.destination {
        Destination::Oci { dir, tag } => image
            .write_oci_layout(dir, tag)
            .map_err(|e| format!("cannot write the OCI layout '{}': {e}", dir.display()))?,
        Destination::Push { host, repo, tag } => {
            let remote = Remote::anonymous(&format!("http://{host}")).map_err(|e| e.to_string())?;
            image
                .push(&remote, repo, tag)
                .map_err(|e| format!("cannot push to {host}/{repo}:{tag}: {e}"))?
        }
    }
    Ok(image.manifest_digest)
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut destination = None;
    let mut media_types = MediaTypes::Oci;
    let mut rest = args.iter();
    match rest.next().map(String::as_str) {
        Some("busybox") => {}
        Some(other) => {
            return Err(format!(
                "unknown image '{other}' (the one image is: busybox)"
            ))
        }
        None => return Err("missing the image to build".into()),
    }
    while let Some(arg) = rest.next() {
        let value = || {
            rest.clone()
                .next()
                .cloned()
                .ok_or(format!("{arg} needs a value"))
        };
        let parsed = match arg.as_str() {
            "--docker" => {
                media_types = MediaTypes::Docker;
                continue;
            }
            "--oci" => parse_oci(&value()?)?,
            "--push" => parse_push(&value()?)?,
            other => return Err(format!("unknown argument '{other}'")),
        };
        rest.next();
        if destination.replace(parsed).is_some() {
            return Err("give one destination: --oci or --push".into());
        }
    }
    let destination =
        destination.ok_or("missing --oci DIR[:TAG] or --push HOST:PORT/REPO[:TAG]")?;
    Ok(Args {
        destination,
        media_types,
    })
}

/// `DIR[:TAG]`: the part after the last `:` is a tag unless it contains a `/`.
fn parse_oci(value: &str) -> Result<Destination, String> {
    let (dir, tag) = match value.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') => (dir, tag),
        _ => (value, "latest"),
    };
    if dir.is_empty() || tag.is_empty() {
        return Err(format!("invalid --oci '{value}': expected DIR[:TAG]"));
    }
    Ok(Destination::Oci {
        dir: PathBuf::from(dir),
        tag: tag.to_string(),
    })
}

/// `HOST:PORT/REPO[:TAG]` on a loopback host: the push is plain http.
fn parse_push(value: &str) -> Result<Destination, String> {
    let invalid = |why: &str| format!("invalid --push '{value}': {why}");
    let (host, reference) = value
        .split_once('/')
        .ok_or_else(|| invalid("expected HOST:PORT/REPO[:TAG]"))?;
    let (repo, tag) = match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    };
    if repo.is_empty() || tag.is_empty() {
        return Err(invalid("expected HOST:PORT/REPO[:TAG]"));
    }
    if !is_loopback(host) {
        return Err(invalid(
            "plain http is only used for loopback registries (127.0.0.0/8, localhost, [::1])",
        ));
    }
    Ok(Destination::Push {
        host: host.to_string(),
        repo: repo.to_string(),
        tag: tag.to_string(),
    })
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod parsing {
    use super::*;

    fn parse(line: &str) -> Result<Args, String> {
        parse_args(
            &line
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn oci_destinations() {
        let args = parse("busybox --oci out/layout:v1").unwrap();
        assert_eq!(
            args.destination,
            Destination::Oci {
                dir: "out/layout".into(),
                tag: "v1".into()
            }
        );
        let args = parse("busybox --oci out").unwrap();
        assert_eq!(
            args.destination,
            Destination::Oci {
                dir: "out".into(),
                tag: "latest".into()
            }
        );
    }

    #[test]
    fn push_destinations() {
        let args = parse("busybox --push 127.0.0.1:5000/library/busybox --docker").unwrap();
        let expected = Destination::Push {
            host: "127.0.0.1:5000".into(),
            repo: "library/busybox".into(),
            tag: "latest".into(),
        };
        assert_eq!(args.destination, expected);
        assert_eq!(args.media_types, MediaTypes::Docker);
        assert!(parse("busybox --push example.com/busybox:1")
            .unwrap_err()
            .contains("loopback"));
        assert!(parse("busybox --push [::1]:5000/b:1").is_ok());
    }

    #[test]
    fn usage_errors() {
        assert!(parse("").is_err());
        assert!(parse("alpine --oci x").unwrap_err().contains("alpine"));
        assert!(parse("busybox").unwrap_err().contains("--oci"));
        assert!(parse("busybox --oci")
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse("busybox --oci a --push 127.0.0.1:1/b")
            .unwrap_err()
            .contains("one destination"));
    }
}
