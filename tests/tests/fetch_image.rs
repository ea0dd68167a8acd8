//! fetch-image against the real registry (`docker-registry`), in every auth mode, through
//! a fault-injecting proxy, and next to skopeo and umoci for interop.
//!
//! Each failure case checks what a user would: a clear error, no new file under
//! `blobs/`, no temporary file left, `index.json` unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use oci_spec::image::{ImageIndex, ImageManifest};
use tests::bins::bin;
use tests::busybox::busybox_image;
use tests::image::{
    sha256_digest, Compression, Image, ImageBuilder, IndexBuilder, Layer, MediaTypes,
};
use tests::prereq;
use tests::registry::{Auth, Registry, RegistryConfig, REQUIRED_COMMANDS};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

// ---------------------------------------------------------------------------------------
// Helpers

fn have_registry(test: &str) -> bool {
    prereq::require_commands(test, REQUIRED_COMMANDS)
}

fn anonymous() -> Registry {
    Registry::start(RegistryConfig {
        auth: Auth::Anonymous,
        tls: false,
    })
}

/// fetch-image with a clean environment: no auth file of the machine's user is found.
fn fetch_image(home: &Path) -> Command {
    let mut cmd = Command::new(bin("fetch-image"));
    for var in [
        "REGISTRY_AUTH_FILE",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
        "DOCKER_CONFIG",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home);
    cmd
}

fn run(cmd: &mut Command) -> Output {
    let output = cmd.output().expect("run fetch-image");
    eprintln!(
        "fetch-image: {}\nstdout: {}stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Pulls `source` into `dest` (`DIR:TAG`), asserting success; returns the digest printed.
fn pull(home: &Path, source: &str, dest: &Path, tag: &str, extra: &[&str]) -> String {
    let output = run(fetch_image(home)
        .args(extra)
        .arg(source)
        .arg(format!("oci:{}:{tag}", dest.display())));
    assert!(output.status.success(), "fetch failed: {}", stderr(&output));
    let digest = stdout(&output);
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    digest
}

fn small_image(seed: &str) -> Image {
    ImageBuilder::new()
        .layer(
            Layer::new()
                .dir("etc", 0o755)
                .file("etc/seed", seed.as_bytes(), 0o644),
            Compression::Gzip,
        )
        .layer(
            Layer::new().file("data", seed.repeat(50_000).as_bytes(), 0o644),
            Compression::Gzip,
        )
        .cmd(["/bin/sh"])
        .build()
}

fn blob_names(layout: &Path) -> BTreeSet<String> {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn temp_files(layout: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for dir in [layout.to_owned(), layout.join("blobs/sha256")] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.filter_map(|e| e.ok()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    found.push(name);
                }
            }
        }
    }
    found
}

fn read_index(layout: &Path) -> ImageIndex {
    serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap()
}

fn tags(layout: &Path) -> BTreeMap<String, String> {
    read_index(layout)
        .manifests()
        .iter()
        .filter_map(|d| {
            let tag = d
                .annotations()
                .as_ref()?
                .get("org.opencontainers.image.ref.name")?;
            Some((tag.clone(), d.digest().to_string()))
        })
        .collect()
}

/// Every blob in the layout hashes to its name, and every manifest's blobs are there.
fn assert_layout_valid(layout: &Path) {
    assert_eq!(
        std::fs::read_to_string(layout.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    for name in blob_names(layout) {
        let bytes = std::fs::read(layout.join("blobs/sha256").join(&name)).unwrap();
        assert_eq!(
            sha256_digest(&bytes),
            format!("sha256:{name}"),
            "blob {name}"
        );
    }
    for entry in read_index(layout).manifests() {
        let path = layout.join("blobs/sha256").join(entry.digest().digest());
        let manifest: ImageManifest =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(
            manifest
                .media_type()
                .as_ref()
                .map(|m| m.to_string())
                .as_deref(),
            Some(OCI_MANIFEST)
        );
        for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
            let path = layout.join("blobs/sha256").join(blob.digest().digest());
            assert_eq!(std::fs::metadata(&path).unwrap().len(), blob.size());
        }
    }
    assert!(temp_files(layout).is_empty(), "{:?}", temp_files(layout));
}

/// What a failed fetch must leave: the same blobs, no temporary file, the same index.json.
struct Snapshot {
    blobs: BTreeSet<String>,
    index: Option<Vec<u8>>,
}

fn snapshot(layout: &Path) -> Snapshot {
    Snapshot {
        blobs: blob_names(layout),
        index: std::fs::read(layout.join("index.json")).ok(),
    }
}

fn assert_unchanged(layout: &Path, before: &Snapshot) {
    assert_eq!(blob_names(layout), before.blobs, "blobs changed");
    assert_eq!(
        std::fs::read(layout.join("index.json")).ok(),
        before.index,
        "index.json changed"
    );
    assert!(temp_files(layout).is_empty(), "{:?}", temp_files(layout));
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

// ---------------------------------------------------------------------------------------
// Pulls and interop

#[test]
fn pulls_busybox_like_skopeo_and_umoci_reads_it() {
    if !have_registry("pulls_busybox_like_skopeo_and_umoci_reads_it")
        || !prereq::require_commands(
            "pulls_busybox_like_skopeo_and_umoci_reads_it",
            &["skopeo", "umoci"],
        )
    {
        return;
    }
    let registry = anonymous();
    let image = busybox_image().build();
    image.push(&registry, "library/busybox", "1.36").unwrap();
    let work = tempfile::tempdir().unwrap();
    let ours = work.path().join("ours");
    let theirs = work.path().join("theirs");
    let source = format!("docker://{}/library/busybox:1.36", registry.host());

    let digest = pull(work.path(), &source, &ours, "1.36", &[]);
    assert_eq!(
        digest, image.manifest_digest,
        "an OCI manifest is stored as served"
    );
    assert_layout_valid(&ours);
    assert_eq!(tags(&ours).get("1.36"), Some(&digest));

    let status = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", &source])
        .arg(format!("oci:{}:1.36", theirs.display()))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        blob_names(&ours),
        blob_names(&theirs),
        "same blobs as skopeo"
    );
    assert_eq!(
        tags(&ours),
        tags(&theirs),
        "same index.json entry as skopeo"
    );

    let inspect = Command::new("skopeo")
        .args(["inspect"])
        .arg(format!("oci:{}:1.36", ours.display()))
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    assert!(String::from_utf8_lossy(&inspect.stdout).contains(&digest));

    let bundle = work.path().join("bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:1.36", ours.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        unpack.status.success(),
        "{}",
        String::from_utf8_lossy(&unpack.stderr)
    );
    assert!(bundle.join("rootfs/etc/passwd").is_file());
}

#[test]
fn converts_docker_schema2_keeping_every_blob() {
    if !have_registry("converts_docker_schema2_keeping_every_blob")
        || !prereq::require_commands("converts_docker_schema2_keeping_every_blob", &["skopeo"])
    {
        return;
    }
    let registry = anonymous();
    let image = busybox_image().media_types(MediaTypes::Docker).build();
    image.push(&registry, "docker/busybox", "latest").unwrap();
    let work = tempfile::tempdir().unwrap();
    let ours = work.path().join("ours");
    let theirs = work.path().join("theirs");
    let source = format!("{}/docker/busybox", registry.host());

    let digest = pull(work.path(), &source, &ours, "latest", &[]);
    assert_ne!(
        digest, image.manifest_digest,
        "the converted manifest is a new document"
    );
    assert_layout_valid(&ours);
    let manifest: ImageManifest = serde_json::from_slice(
        &std::fs::read(ours.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest.config().media_type().to_string(),
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(manifest.config().digest().to_string(), image.config_digest);
    for (ours, theirs) in manifest.layers().iter().zip(&image.layers) {
        assert_eq!(ours.digest().to_string(), theirs.digest);
        assert_eq!(
            ours.media_type().to_string(),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }

    let status = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{source}"))
        .arg(format!("oci:{}:latest", theirs.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let theirs_manifest: ImageManifest = {
        let digest = &tags(&theirs)["latest"];
        serde_json::from_slice(
            &std::fs::read(theirs.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap(),
        )
        .unwrap()
    };
    // Same layers under the same media types; skopeo re-encodes the config (new digest),
    // fetch-image keeps it byte for byte.
    assert_eq!(manifest.layers(), theirs_manifest.layers());
    assert_eq!(
        manifest.config().media_type(),
        theirs_manifest.config().media_type()
    );
    for layer in manifest.layers() {
        assert!(blob_names(&theirs).contains(layer.digest().digest()));
    }
}

#[test]
fn second_pull_downloads_no_blob() {
    if !have_registry("second_pull_downloads_no_blob") {
        return;
    }
    let registry = anonymous();
    small_image("again").push(&registry, "again", "v1").unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let source = format!("{}/again:v1", registry.host());
    let first = pull(work.path(), &source, &layout, "v1", &[]);
    let blob_gets = count(&registry.log(), "\"GET /v2/again/blobs/");
    assert_eq!(blob_gets, 3, "config and two layers");
    let second = pull(work.path(), &source, &layout, "v1", &[]);
    assert_eq!(first, second);
    assert_eq!(count(&registry.log(), "\"GET /v2/again/blobs/"), blob_gets);
    assert_layout_valid(&layout);
}

#[test]
fn by_digest_without_tag_and_retagging() {
    if !have_registry("by_digest_without_tag_and_retagging") {
        return;
    }
    let registry = anonymous();
    let one = small_image("one");
    let two = small_image("two");
    one.push(&registry, "app", "one").unwrap();
    two.push(&registry, "app", "two").unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let host = registry.host();

    pull(work.path(), &format!("{host}/app:one"), &layout, "x", &[]);
    pull(work.path(), &format!("{host}/app:two"), &layout, "y", &[]);
    pull(work.path(), &format!("{host}/app:two"), &layout, "x", &[]);
    let output = run(fetch_image(work.path())
        .arg(format!("{host}/app@{}", one.manifest_digest))
        .arg(&layout));
    assert!(output.status.success());
    assert_eq!(stdout(&output), one.manifest_digest);

    let index = read_index(&layout);
    assert_eq!(
        index.manifests().len(),
        3,
        "x, y, and one entry without a name"
    );
    let tags = tags(&layout);
    assert_eq!(tags["x"], two.manifest_digest);
    assert_eq!(tags["y"], two.manifest_digest);
    assert_layout_valid(&layout);
}

#[test]
fn reports_missing_images_and_bad_references() {
    if !have_registry("reports_missing_images_and_bad_references") {
        return;
    }
    let registry = anonymous();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let output = run(fetch_image(work.path())
        .arg(format!("{}/nothing/here:v9", registry.host()))
        .arg(&layout));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("image or tag not found:")
            && stderr(&output).contains("nothing/here:v9"),
        "{}",
        stderr(&output)
    );
    assert!(blob_names(&layout).is_empty());
    assert!(!layout.join("index.json").exists());

    // Refused before any request: nothing logged by the registry.
    let before = registry.log().lines().count();
    let output = run(fetch_image(work.path())
        .arg(format!("{}/UPPER/case", registry.host()))
        .arg(&layout));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("must be lowercase"),
        "{}",
        stderr(&output)
    );
    assert_eq!(registry.log().lines().count(), before);
}

// ---------------------------------------------------------------------------------------
// Authentication

fn auth_file(user: &str, password: &str, key: &str) -> String {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(r#"{{"auths":{{"{key}":{{"auth":"{auth}"}}}}}}"#)
}

#[test]
fn basic_auth_with_creds_and_wrong_password() {
    if !have_registry("basic_auth_with_creds_and_wrong_password") {
        return;
    }
    let registry = Registry::start(RegistryConfig {
        auth: Auth::Basic {
            user: "alice".into(),
            password: "s3cret".into(),
        },
        tls: false,
    });
    small_image("basic")
        .push(&registry, "private/app", "1")
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let source = format!("{}/private/app:1", registry.host());

    pull(
        work.path(),
        &source,
        &layout,
        "1",
        &["--creds", "alice:s3cret"],
    );
    assert_layout_valid(&layout);

    let other = work.path().join("other");
    let output = run(fetch_image(work.path())
        .args(["--creds", "alice:wrong", &source])
        .arg(&other));
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("credentials for 'alice' were refused"),
        "{err}"
    );
    assert!(blob_names(&other).is_empty());

    let output = run(fetch_image(work.path()).arg(&source).arg(&other));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("needs credentials"),
        "{}",
        stderr(&output)
    );
}

/// Where the auth file goes, the environment that points at it, the key inside.
type AuthFileCase = (&'static str, Vec<(&'static str, &'static str)>, String);

#[test]
fn token_auth_from_every_auth_file_location() {
    if !have_registry("token_auth_from_every_auth_file_location") {
        return;
    }
    let registry = Registry::start(RegistryConfig {
        auth: Auth::Token {
            user: "bob".into(),
            password: "hunter2".into(),
        },
        tls: false,
    });
    small_image("token")
        .push(&registry, "team/app", "v1")
        .unwrap();
    let host = registry.host().to_owned();
    let source = format!("{host}/team/app:v1");

    // (where the file goes, the environment that points at it, the key inside)
    let cases: Vec<AuthFileCase> = vec![
        (
            "REGISTRY_AUTH_FILE",
            vec![("REGISTRY_AUTH_FILE", "auth.json")],
            host.clone(),
        ),
        (
            "XDG_RUNTIME_DIR",
            vec![("XDG_RUNTIME_DIR", "run")],
            format!("http://{host}"),
        ),
        (
            "XDG_CONFIG_HOME",
            vec![("XDG_CONFIG_HOME", "xdg")],
            format!("{host}/team/app"),
        ),
        ("~/.config", vec![], format!("{host}/team")),
        (
            "DOCKER_CONFIG",
            vec![("DOCKER_CONFIG", "dockercfg")],
            host.clone(),
        ),
        ("~/.docker", vec![], format!("https://{host}/v2/")),
    ];
    for (i, (location, env, key)) in cases.into_iter().enumerate() {
        let home = tempfile::tempdir().unwrap();
        let file = match location {
            "REGISTRY_AUTH_FILE" => home.path().join("auth.json"),
            "XDG_RUNTIME_DIR" => home.path().join("run/containers/auth.json"),
            "XDG_CONFIG_HOME" => home.path().join("xdg/containers/auth.json"),
            "~/.config" => home.path().join(".config/containers/auth.json"),
            "DOCKER_CONFIG" => home.path().join("dockercfg/config.json"),
            _ => home.path().join(".docker/config.json"),
        };
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, auth_file("bob", "hunter2", &key)).unwrap();
        let layout = home.path().join("layout");
        let mut cmd = fetch_image(home.path());
        for (var, dir) in env {
            cmd.env(var, home.path().join(dir));
        }
        let output = run(cmd.arg(&source).arg(format!("oci:{}:v1", layout.display())));
        assert!(
            output.status.success(),
            "case {i} ({location}): {}",
            stderr(&output)
        );
        assert_layout_valid(&layout);
    }

    // --authfile wins over the standard places; --no-creds ignores them all.
    let home = tempfile::tempdir().unwrap();
    let explicit = home.path().join("explicit.json");
    std::fs::write(&explicit, auth_file("bob", "hunter2", &host)).unwrap();
    std::fs::create_dir_all(home.path().join(".docker")).unwrap();
    std::fs::write(
        home.path().join(".docker/config.json"),
        auth_file("bob", "nope", &host),
    )
    .unwrap();
    let layout = home.path().join("layout");
    let output = run(fetch_image(home.path())
        .arg("--authfile")
        .arg(&explicit)
        .arg(&source)
        .arg(&layout));
    assert!(output.status.success(), "{}", stderr(&output));
    let output = run(fetch_image(home.path()).arg(&source).arg(&layout));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("credentials for 'bob' were refused"),
        "{}",
        stderr(&output)
    );
    let output = run(fetch_image(home.path())
        .args(["--no-creds", &source])
        .arg(&layout));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("needs credentials"),
        "{}",
        stderr(&output)
    );

    // Anonymous tokens, as Docker Hub gives for public images.
    registry.set_anonymous_pull(true);
    let fresh = home.path().join("anonymous");
    pull(home.path(), &source, &fresh, "v1", &["--no-creds"]);
    assert!(registry.token_requests() > 0);
}

#[test]
fn tls_needs_the_ca_and_never_falls_back_to_http() {
    if !have_registry("tls_needs_the_ca_and_never_falls_back_to_http") {
        return;
    }
    let registry = Registry::start(RegistryConfig {
        auth: Auth::Anonymous,
        tls: true,
    });
    small_image("tls").push(&registry, "tls/app", "1").unwrap();
    let work = tempfile::tempdir().unwrap();
    let source = format!("{}/tls/app:1", registry.host());
    let ca_dir = registry.ca_dir().unwrap().to_str().unwrap().to_owned();

    let layout = work.path().join("with-ca");
    pull(work.path(), &source, &layout, "1", &["--cert-dir", &ca_dir]);
    assert_layout_valid(&layout);

    let layout = work.path().join("without-ca");
    let before = registry.log();
    let output = run(fetch_image(work.path()).arg(&source).arg(&layout));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("certificate"),
        "{}",
        stderr(&output)
    );
    assert!(blob_names(&layout).is_empty());
    assert_eq!(
        count(&registry.log(), "GET /v2/tls"),
        count(&before, "GET /v2/tls")
    );

    pull(work.path(), &source, &layout, "1", &["--tls-verify=false"]);
    assert_layout_valid(&layout);
}

// ---------------------------------------------------------------------------------------
// Platforms

fn platform_image(arch: &str, variant: Option<&str>, media_types: MediaTypes) -> Image {
    ImageBuilder::new()
        .layer(
            Layer::new().file("arch", arch.as_bytes(), 0o644),
            Compression::Gzip,
        )
        .platform("linux", arch, variant)
        .media_types(media_types)
        .build()
}

#[test]
fn picks_platforms_from_indexes_and_manifest_lists() {
    if !have_registry("picks_platforms_from_indexes_and_manifest_lists") {
        return;
    }
    let registry = anonymous();
    let work = tempfile::tempdir().unwrap();
    for (repo, types) in [
        ("oci-index", MediaTypes::Oci),
        ("docker-list", MediaTypes::Docker),
    ] {
        let amd64 = platform_image("amd64", None, types);
        let arm64 = platform_image("arm64", Some("v8"), types);
        let armv7 = platform_image("arm", Some("v7"), types);
        let index = IndexBuilder::new()
            .image(amd64.clone())
            .image(arm64.clone())
            .image(armv7.clone())
            .media_types(types)
            .build();
        index.push(&registry, repo, "multi").unwrap();
        let source = format!("{}/{repo}:multi", registry.host());
        let layout = work.path().join(repo);

        let arm64_digest = pull(
            work.path(),
            &source,
            &layout,
            "arm64",
            &["--platform", "linux/arm64"],
        );
        let armv7_digest = pull(
            work.path(),
            &source,
            &layout,
            "arm",
            &["--platform", "linux/arm/v7"],
        );
        if types == MediaTypes::Oci {
            assert_eq!(arm64_digest, arm64.manifest_digest);
            assert_eq!(armv7_digest, armv7.manifest_digest);
        }
        assert_ne!(arm64_digest, armv7_digest);
        let manifest: ImageManifest = serde_json::from_slice(
            &std::fs::read(layout.join("blobs/sha256").join(&arm64_digest[7..])).unwrap(),
        )
        .unwrap();
        assert_eq!(
            manifest.layers()[0].digest().to_string(),
            arm64.layers[0].digest
        );
        assert_layout_valid(&layout);

        let before = snapshot(&layout);
        let output = run(fetch_image(work.path())
            .args(["--platform", "linux/s390x", &source])
            .arg(&layout));
        assert_eq!(output.status.code(), Some(1));
        let err = stderr(&output);
        assert!(
            err.contains("no image for platform linux/s390x")
                && err.contains("linux/amd64, linux/arm64/v8, linux/arm/v7"),
            "{err}"
        );
        assert_unchanged(&layout, &before);
    }
}

// ---------------------------------------------------------------------------------------
// Concurrency

#[test]
fn eight_concurrent_fetches_into_one_layout_keep_every_tag() {
    if !have_registry("eight_concurrent_fetches_into_one_layout_keep_every_tag") {
        return;
    }
    let registry = anonymous();
    for i in 0..8 {
        small_image(&format!("image {i}"))
            .push(&registry, "many", &format!("t{i}"))
            .unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let children: Vec<_> = (0..8)
        .map(|i| {
            fetch_image(work.path())
                .arg("-q")
                .arg(format!("{}/many:t{i}", registry.host()))
                .arg(format!("oci:{}:t{i}", layout.display()))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let tags = tags(&layout);
    assert_eq!(tags.len(), 8, "{tags:?}");
    assert_layout_valid(&layout);
}

// ---------------------------------------------------------------------------------------
// Faults, through a proxy in front of the real registry

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The answer the proxy gives.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Content-Length to announce (defaults to the body's length).
    declared: Option<usize>,
}

/// What the registry answered, fetched by the proxy.
fn upstream(base: &str, seen: &Seen) -> Reply {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = client.get(format!("{base}{}", seen.path));
    for name in ["Accept", "Authorization", "Range"] {
        if let Some(value) = seen.header(name) {
            request = request.header(name, value);
        }
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "content-length" | "connection" | "transfer-encoding"
            )
        })
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = response.bytes().unwrap().to_vec();
    Reply {
        status,
        headers,
        body,
        declared: None,
    }
}

type Rule = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A one-request-per-connection HTTP/1.1 server; `rule` gets each request and its
/// sequence number and returns the reply. Runs until the test ends.
struct Proxy {
    host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    fn start(rule: Box<Rule>) -> Proxy {
        Self::start_with(rule, None)
    }

    /// The same over https, with a self-signed certificate (fetch with --tls-verify=false).
    fn start_tls(rule: Box<Rule>) -> (Proxy, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl req");
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = vec![CertificateDer::from_pem_file(&cert).unwrap()];
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        (Self::start_with(rule, Some(Arc::new(config))), dir)
    }

    fn start_with(rule: Box<Rule>, tls: Option<Arc<rustls::ServerConfig>>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let rule: Arc<Rule> = Arc::from(rule);
        let counter = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let rule = Arc::clone(&rule);
                let log = Arc::clone(&log);
                let counter = Arc::clone(&counter);
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let _ = match tls {
                        None => serve(stream, &*rule, &log, &counter),
                        Some(config) => serve_tls(stream, config, &*rule, &log, &counter),
                    };
                });
            }
        });
        Proxy { host, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(
    mut stream: TcpStream,
    rule: &Rule,
    log: &Mutex<Vec<Seen>>,
    counter: &AtomicUsize,
) -> std::io::Result<()> {
    exchange(&mut stream, rule, log, counter)?;
    // Drain anything left so the close is clean, then drop (closes).
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    Ok(())
}

fn serve_tls(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    rule: &Rule,
    log: &Mutex<Vec<Seen>>,
    counter: &AtomicUsize,
) -> std::io::Result<()> {
    let connection = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, stream);
    exchange(&mut tls, rule, log, counter)?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// Reads one GET (no body), asks `rule`, writes the reply.
fn exchange(
    stream: &mut (impl std::io::Read + std::io::Write),
    rule: &Rule,
    log: &Mutex<Vec<Seen>>,
    counter: &AtomicUsize,
) -> std::io::Result<()> {
    let seen = {
        let mut reader = BufReader::new(&mut *stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        Seen { path, headers }
    };
    log.lock().unwrap().push(seen.clone());
    let n = counter.fetch_add(1, Ordering::SeqCst);
    let reply = rule(&seen, n);
    let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply.declared.unwrap_or(reply.body.len())
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(&reply.body)?;
    stream.flush()
}

fn is_blob(seen: &Seen, digest: &str) -> bool {
    seen.path.ends_with(&format!("/blobs/{digest}"))
}

fn is_manifest(seen: &Seen) -> bool {
    seen.path.contains("/manifests/")
}

/// A registry with one image, and a proxy in front of it with `rule`.
struct Faulty {
    _registry: Registry,
    proxy: Proxy,
    image: Image,
    work: tempfile::TempDir,
}

impl Faulty {
    fn new(rule: impl Fn(&Seen, usize, &str, &Image) -> Reply + Send + Sync + 'static) -> Faulty {
        let registry = anonymous();
        let image = small_image("faulty");
        image.push(&registry, "faulty", "v1").unwrap();
        let base = registry.base_url();
        let for_rule = image.clone();
        let proxy = Proxy::start(Box::new(move |seen, n| rule(seen, n, &base, &for_rule)));
        Faulty {
            _registry: registry,
            proxy,
            image,
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn layout(&self) -> PathBuf {
        self.work.path().join("layout")
    }

    fn fetch(&self, extra: &[&str]) -> Output {
        run(fetch_image(self.work.path())
            .args(["--retry-times", "2"])
            .args(extra)
            .arg(format!("{}/faulty:v1", self.proxy.host))
            .arg(format!("oci:{}:v1", self.layout().display())))
    }

    /// The big layer: the one worth cutting in the middle.
    fn big_layer(&self) -> String {
        self.image.layers[1].digest.clone()
    }

    /// A layout holding an unrelated image, to check that a failure leaves it alone.
    fn seed_layout(&self) -> Snapshot {
        small_image("bystander")
            .write_oci_layout(&self.layout(), "bystander")
            .unwrap();
        snapshot(&self.layout())
    }
}

fn assert_fails_cleanly(faulty: &Faulty, before: &Snapshot, needle: &str) {
    let output = faulty.fetch(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    assert!(
        err.starts_with("fetch-image: ") && err.lines().count() == 1,
        "{err}"
    );
    assert!(stdout(&output).is_empty());
    assert_unchanged(&faulty.layout(), before);
}

#[test]
fn fault_corrupted_blob_keeps_nothing() {
    if !have_registry("fault_corrupted_blob_keeps_nothing") {
        return;
    }
    let faulty = Faulty::new(|seen, _, base, image| {
        let mut reply = upstream(base, seen);
        if is_blob(seen, &image.layers[1].digest) {
            let middle = reply.body.len() / 2;
            reply.body[middle] ^= 0xff;
        }
        reply
    });
    let before = faulty.seed_layout();
    assert_fails_cleanly(&faulty, &before, "does not match its digest");
}

#[test]
fn fault_over_long_body_is_refused() {
    if !have_registry("fault_over_long_body_is_refused") {
        return;
    }
    let faulty = Faulty::new(|seen, _, base, image| {
        let mut reply = upstream(base, seen);
        if is_blob(seen, &image.layers[0].digest) {
            reply.body.extend_from_slice(b"and then some more bytes");
        }
        reply
    });
    let before = faulty.seed_layout();
    assert_fails_cleanly(&faulty, &before, "more than the");
}

#[test]
fn fault_endlessly_short_body_fails_after_retries() {
    if !have_registry("fault_endlessly_short_body_fails_after_retries") {
        return;
    }
    let faulty = Faulty::new(|seen, _, base, image| {
        let mut reply = upstream(base, seen);
        if is_blob(seen, &image.layers[1].digest) {
            reply.body.truncate(reply.body.len().min(1000) / 2);
        }
        reply
    });
    let before = faulty.seed_layout();
    assert_fails_cleanly(&faulty, &before, "transfer failed");
    let blob_requests = faulty
        .proxy
        .seen()
        .iter()
        .filter(|s| is_blob(s, &faulty.big_layer()))
        .count();
    assert_eq!(blob_requests, 3, "one try and --retry-times 2");
}

#[test]
fn fault_connection_cut_mid_blob_resumes_with_range() {
    if !have_registry("fault_connection_cut_mid_blob_resumes_with_range") {
        return;
    }
    let faulty = Faulty::new(|seen, n, base, image| {
        let mut reply = upstream(base, seen);
        let _ = n;
        if is_blob(seen, &image.layers[1].digest) && seen.header("Range").is_none() {
            // Announce everything, send half, hang up.
            reply.declared = Some(reply.body.len());
            reply.body.truncate(reply.body.len() / 2);
        }
        reply
    });
    let output = faulty.fetch(&[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), faulty.image.manifest_digest);
    let layer = &faulty.image.layers[1];
    let ranges: Vec<String> = faulty
        .proxy
        .seen()
        .iter()
        .filter(|s| is_blob(s, &layer.digest))
        .filter_map(|s| s.header("Range").map(str::to_owned))
        .collect();
    assert_eq!(ranges, vec![format!("bytes={}-", layer.data.len() / 2)]);
    let stored = std::fs::read(
        faulty
            .layout()
            .join("blobs/sha256")
            .join(&layer.digest[7..]),
    )
    .unwrap();
    assert_eq!(sha256_digest(&stored), layer.digest);
    assert_layout_valid(&faulty.layout());
}

#[test]
fn fault_500_and_429_are_retried() {
    if !have_registry("fault_500_and_429_are_retried") {
        return;
    }
    let failures = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&failures);
    let faulty = Faulty::new(move |seen, _, base, image| {
        let blob = is_blob(seen, &image.layers[0].digest) || is_manifest(seen);
        if blob && counted.fetch_add(1, Ordering::SeqCst) % 3 < 2 {
            let status = if seen.path.contains("/manifests/") {
                429
            } else {
                500
            };
            return Reply {
                status,
                headers: vec![("Retry-After".into(), "0".into())],
                body: b"{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"try later\"}]}"
                    .to_vec(),
                declared: None,
            };
        }
        upstream(base, seen)
    });
    let output = faulty.fetch(&[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_layout_valid(&faulty.layout());
    assert_eq!(
        failures.load(Ordering::SeqCst),
        6,
        "two failures then success, twice"
    );
}

#[test]
fn fault_lying_docker_content_digest_is_ignored() {
    if !have_registry("fault_lying_docker_content_digest_is_ignored") {
        return;
    }
    let faulty = Faulty::new(|seen, _, base, _| {
        let mut reply = upstream(base, seen);
        reply
            .headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("docker-content-digest"));
        reply.headers.push((
            "Docker-Content-Digest".into(),
            format!("sha256:{}", "0".repeat(64)),
        ));
        reply
    });
    let output = faulty.fetch(&[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), faulty.image.manifest_digest);
    assert_layout_valid(&faulty.layout());
}

#[test]
fn fault_tampered_manifest_by_digest_is_refused() {
    if !have_registry("fault_tampered_manifest_by_digest_is_refused") {
        return;
    }
    let faulty = Faulty::new(|seen, _, base, _| {
        let mut reply = upstream(base, seen);
        if is_manifest(seen) {
            reply.body = String::from_utf8(reply.body)
                .unwrap()
                .replacen("\"schemaVersion\"", " \"schemaVersion\"", 1)
                .into_bytes();
        }
        reply
    });
    let before = faulty.seed_layout();
    let output = run(fetch_image(faulty.work.path())
        .arg(format!(
            "{}/faulty@{}",
            faulty.proxy.host, faulty.image.manifest_digest
        ))
        .arg(format!("oci:{}:v1", faulty.layout().display())));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("does not match its digest"),
        "{}",
        stderr(&output)
    );
    assert_unchanged(&faulty.layout(), &before);
}

#[test]
fn fault_six_mib_manifest_is_refused() {
    if !have_registry("fault_six_mib_manifest_is_refused") {
        return;
    }
    let faulty = Faulty::new(|seen, _, base, _| {
        if is_manifest(seen) {
            let mut body = b"{\"schemaVersion\":2,\"annotations\":{\"x\":\"".to_vec();
            body.resize(6 * 1024 * 1024, b'a');
            body.extend_from_slice(b"\"}}");
            return Reply {
                status: 200,
                headers: vec![("Content-Type".into(), OCI_MANIFEST.into())],
                body,
                declared: None,
            };
        }
        upstream(base, seen)
    });
    let before = faulty.seed_layout();
    assert_fails_cleanly(&faulty, &before, "larger than the 4194304 bytes allowed");
}

/// Turns the real manifest into (body, Content-Type) to serve instead.
type Rewrite = Box<dyn Fn(&str) -> (String, String) + Send + Sync>;

#[test]
fn fault_hostile_documents_are_refused() {
    if !have_registry("fault_hostile_documents_are_refused") {
        return;
    }
    // (what the manifest endpoint serves, the error expected)
    let cases: Vec<(Rewrite, &str)> = vec![
        (
            Box::new(|m: &str| {
                let layer_digest = m
                    .split("\"digest\":\"")
                    .nth(2)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_owned();
                (
                    m.replace(&layer_digest, "sha256:../../../../x"),
                    OCI_MANIFEST.to_owned(),
                )
            }),
            "invalid manifest",
        ),
        (
            Box::new(|_: &str| {
                (
                    r#"{"schemaVersion":1,"name":"faulty","tag":"v1","fsLayers":[],"history":[]}"#
                        .to_owned(),
                    "application/vnd.docker.distribution.manifest.v1+prettyjws".to_owned(),
                )
            }),
            "schema 1 manifests are not supported",
        ),
        (
            Box::new(|m: &str| {
                (
                    m.to_owned(),
                    "application/vnd.oci.image.index.v1+json".to_owned(),
                )
            }),
            "contradicts Content-Type",
        ),
        (
            Box::new(|m: &str| {
                (
                    m.replacen('{', r#"{"manifests":[],"#, 1),
                    OCI_MANIFEST.to_owned(),
                )
            }),
            "ambiguous",
        ),
    ];
    for (make, needle) in cases {
        let make = Arc::new(make);
        let faulty = Faulty::new(move |seen, _, base, _| {
            let mut reply = upstream(base, seen);
            if is_manifest(seen) {
                let (body, content_type) = make(&String::from_utf8_lossy(&reply.body));
                reply.body = body.into_bytes();
                reply
                    .headers
                    .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
                reply.headers.push(("Content-Type".into(), content_type));
            }
            reply
        });
        let before = faulty.seed_layout();
        assert_fails_cleanly(&faulty, &before, needle);
        let escaped = faulty.work.path().join("x");
        assert!(!escaped.exists());
    }
}

#[test]
fn fault_redirect_to_another_host_drops_authorization() {
    if !have_registry("fault_redirect_to_another_host_drops_authorization") {
        return;
    }
    let registry = Registry::start(RegistryConfig {
        auth: Auth::Basic {
            user: "carol".into(),
            password: "pw".into(),
        },
        tls: false,
    });
    let image = small_image("redirected");
    image.push(&registry, "faulty", "v1").unwrap();
    let base = registry.base_url();

    // The "object storage": serves blobs itself, fetching them with the test's own
    // credentials; records what fetch-image sent it.
    let storage_base = base.clone();
    let storage = Proxy::start(Box::new(move |seen, _| {
        let mut upstream_seen = seen.clone();
        upstream_seen
            .headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        upstream_seen.headers.push((
            "Authorization".into(),
            "Basic Y2Fyb2w6cHc=".into(), // carol:pw
        ));
        upstream(&storage_base, &upstream_seen)
    }));
    let storage_host = storage.host.clone();
    let front = Proxy::start(Box::new(move |seen, _| {
        if seen.path.contains("/blobs/") {
            return Reply {
                status: 307,
                headers: vec![(
                    "Location".into(),
                    format!("http://{storage_host}{}", seen.path),
                )],
                body: Vec::new(),
                declared: None,
            };
        }
        upstream(&base, seen)
    }));

    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let digest = pull(
        work.path(),
        &format!("{}/faulty:v1", front.host),
        &layout,
        "v1",
        &["--creds", "carol:pw"],
    );
    assert_eq!(digest, image.manifest_digest);
    assert_layout_valid(&layout);
    let at_storage = storage.seen();
    assert_eq!(at_storage.len(), 3, "config and two layers");
    assert!(
        at_storage
            .iter()
            .all(|s| s.header("Authorization").is_none()),
        "{at_storage:?}"
    );
    assert!(front
        .seen()
        .iter()
        .any(|s| is_manifest(s) && s.header("Authorization").is_some()));
}

#[test]
fn fault_redirect_to_plain_http_elsewhere_is_refused() {
    if !have_registry("fault_redirect_to_plain_http_elsewhere_is_refused") {
        return;
    }
    // A loopback registry may use plain http; a redirect from it to plain http on a
    // remote host may not be followed (the request would leave the machine in clear).
    let faulty = Faulty::new(|seen, _, base, _| {
        if seen.path.contains("/blobs/") {
            return Reply {
                status: 302,
                headers: vec![("Location".into(), "http://192.0.2.1/blob".into())],
                body: Vec::new(),
                declared: None,
            };
        }
        upstream(base, seen)
    });
    let before = faulty.seed_layout();
    assert_fails_cleanly(&faulty, &before, "plain http is only allowed to loopback");
}

#[test]
fn explain_prints_requests_and_curl_commands() {
    if !have_registry("explain_prints_requests_and_curl_commands") {
        return;
    }
    let registry = anonymous();
    small_image("explain")
        .push(&registry, "explain", "v1")
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let output = run(fetch_image(work.path())
        .arg("--explain")
        .arg(format!("{}/explain:v1", registry.host()))
        .arg(work.path().join("layout")));
    assert!(output.status.success());
    let err = stderr(&output);
    let manifest_line = err
        .lines()
        .find(|l| l.contains("/v2/explain/manifests/v1"))
        .expect("the manifest request is explained");
    assert!(manifest_line.starts_with("GET http://"), "{manifest_line}");
    assert!(manifest_line.contains("=> 200 OK"), "{manifest_line}");
    assert!(
        manifest_line.contains("# like: curl -sS -H 'Accept: "),
        "{manifest_line}"
    );
    assert_eq!(
        stdout(&output).lines().count(),
        1,
        "stdout is the digest only"
    );
}

#[test]
fn token_auth_over_tls_like_docker_hub() {
    if !have_registry("token_auth_over_tls_like_docker_hub") {
        return;
    }
    let registry = Registry::start(RegistryConfig {
        auth: Auth::Token {
            user: "dave".into(),
            password: "pw".into(),
        },
        tls: true,
    });
    registry.set_anonymous_pull(true);
    small_image("hub")
        .push(&registry, "library/hub", "latest")
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let ca_dir = registry.ca_dir().unwrap().to_str().unwrap().to_owned();
    let source = format!("docker://{}/library/hub", registry.host());

    let anonymous = work.path().join("anonymous");
    pull(
        work.path(),
        &source,
        &anonymous,
        "latest",
        &["--cert-dir", &ca_dir],
    );
    assert_layout_valid(&anonymous);
    let with_creds = work.path().join("with-creds");
    let before = registry.token_requests();
    pull(
        work.path(),
        &source,
        &with_creds,
        "latest",
        &["--cert-dir", &ca_dir, "--creds", "dave:pw"],
    );
    assert_eq!(
        registry.token_requests() - before,
        1,
        "one token for the whole pull"
    );
    let output = run(fetch_image(work.path())
        .args(["--cert-dir", &ca_dir, "--creds", "dave:wrong", &source])
        .arg(work.path().join("wrong")));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("credentials for 'dave' were refused"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn follows_nested_indexes_only_so_deep() {
    if !have_registry("follows_nested_indexes_only_so_deep") {
        return;
    }
    let registry = anonymous();
    let image = small_image("nested");
    let inner = IndexBuilder::new().image(image.clone()).build();
    IndexBuilder::new()
        .index(inner)
        .build()
        .push(&registry, "nested", "two")
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let digest = pull(
        work.path(),
        &format!("{}/nested:two", registry.host()),
        &layout,
        "two",
        &[],
    );
    assert_eq!(digest, image.manifest_digest);
    assert_layout_valid(&layout);

    let mut chain = IndexBuilder::new().image(image).build();
    for _ in 0..20 {
        chain = IndexBuilder::new().index(chain).build();
    }
    chain.push(&registry, "nested", "deep").unwrap();
    let before = snapshot(&layout);
    let manifest_gets = count(&registry.log(), "\"GET /v2/nested/manifests/");
    let output = run(fetch_image(work.path())
        .arg(format!("{}/nested:deep", registry.host()))
        .arg(format!("oci:{}:deep", layout.display())));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("nests indexes more than 4 deep"),
        "{}",
        stderr(&output)
    );
    assert_unchanged(&layout, &before);
    let followed = count(&registry.log(), "\"GET /v2/nested/manifests/") - manifest_gets;
    assert!(
        followed <= 6,
        "{followed} manifest requests for a 21-deep chain"
    );
}

#[test]
fn richer_images_match_skopeo_and_unpack_with_umoci() {
    if !have_registry("richer_images_match_skopeo_and_unpack_with_umoci")
        || !prereq::require_commands(
            "richer_images_match_skopeo_and_unpack_with_umoci",
            &["skopeo", "umoci"],
        )
    {
        return;
    }
    let registry = anonymous();
    let image = ImageBuilder::new()
        .layer(
            Layer::new()
                .dir("usr", 0o755)
                .dir("usr/bin", 0o755)
                .file("usr/bin/tool", b"#!/bin/sh\necho hi\n", 0o755)
                .symlink("usr/bin/alias", "tool")
                .hardlink("usr/bin/again", "usr/bin/tool"),
            Compression::Gzip,
        )
        .layer(
            Layer::new()
                .dir("etc", 0o755)
                .file("etc/conf", b"a=1\n", 0o600),
            Compression::Gzip,
        )
        .layer(
            Layer::new()
                .whiteout("usr/bin/alias")
                .file("etc/conf", b"a=2\n", 0o644),
            Compression::Gzip,
        )
        .entrypoint(["/usr/bin/tool"])
        .env("A=b&c")
        .working_dir("/etc")
        .label("org.example.rich", "yes")
        .build();
    image.push(&registry, "rich/app", "1").unwrap();
    let work = tempfile::tempdir().unwrap();
    let ours = work.path().join("ours");
    let theirs = work.path().join("theirs");
    let source = format!("docker://{}/rich/app:1", registry.host());

    let digest = pull(work.path(), &source, &ours, "1", &["-j", "3"]);
    assert_eq!(digest, image.manifest_digest);
    assert_layout_valid(&ours);
    let status = Command::new("skopeo")
        .args(["copy", "-q", "--src-tls-verify=false", &source])
        .arg(format!("oci:{}:1", theirs.display()))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(blob_names(&ours), blob_names(&theirs));
    assert_eq!(
        std::fs::read(ours.join("index.json")).unwrap(),
        std::fs::read(theirs.join("index.json")).unwrap(),
        "index.json byte for byte as skopeo writes it"
    );

    let bundle = work.path().join("bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:1", ours.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        unpack.status.success(),
        "{}",
        String::from_utf8_lossy(&unpack.stderr)
    );
    assert_eq!(
        std::fs::read(bundle.join("rootfs/etc/conf")).unwrap(),
        b"a=2\n"
    );
    assert!(!bundle.join("rootfs/usr/bin/alias").exists());

    // zstd and uncompressed layers are kept as served (skopeo gzips the uncompressed one,
    // which changes its digest and the manifest's; Debian's umoci reads no zstd): the
    // manifest digest stays the source's.
    let plain = ImageBuilder::new()
        .layer(
            Layer::new().file("zstd", b"zstd compressed", 0o644),
            Compression::Zstd,
        )
        .layer(
            Layer::new().file("plain", b"not compressed", 0o644),
            Compression::None,
        )
        .build();
    plain.push(&registry, "rich/plain", "1").unwrap();
    let layout = work.path().join("plain");
    let digest = pull(
        work.path(),
        &format!("{}/rich/plain:1", registry.host()),
        &layout,
        "1",
        &[],
    );
    assert_eq!(digest, plain.manifest_digest);
    for layer in &plain.layers {
        assert!(blob_names(&layout).contains(&layer.digest[7..]));
    }
    assert_layout_valid(&layout);
}

#[test]
fn fault_redirect_from_https_to_http_is_refused() {
    if !have_registry("fault_redirect_from_https_to_http_is_refused") {
        return;
    }
    let registry = anonymous();
    let image = small_image("downgrade");
    image.push(&registry, "faulty", "v1").unwrap();
    let base = registry.base_url();
    let plain = Proxy::start(Box::new({
        let base = base.clone();
        move |seen, _| upstream(&base, seen)
    }));
    let plain_host = plain.host.clone();
    let (front, _cert) = Proxy::start_tls(Box::new(move |seen, _| {
        if seen.path.contains("/blobs/") {
            return Reply {
                status: 302,
                headers: vec![(
                    "Location".into(),
                    format!("http://{plain_host}{}", seen.path),
                )],
                body: Vec::new(),
                declared: None,
            };
        }
        upstream(&base, seen)
    }));
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    small_image("bystander")
        .write_oci_layout(&layout, "bystander")
        .unwrap();
    let before = snapshot(&layout);
    let output = run(fetch_image(work.path())
        .args(["--tls-verify=false", &format!("{}/faulty:v1", front.host)])
        .arg(format!("oci:{}:v1", layout.display())));
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("https must not be downgraded to plain http"),
        "{err}"
    );
    assert!(
        front.seen().iter().any(|s| s.path.contains("/blobs/")),
        "went over https"
    );
    assert!(plain.seen().is_empty(), "nothing sent over plain http");
    assert_unchanged(&layout, &before);
}

#[test]
fn fault_odd_token_realms_are_refused() {
    if !have_registry("fault_odd_token_realms_are_refused") {
        return;
    }
    for realm in [
        "https://169.254.169.254/latest/meta-data",
        "file:///etc/shadow",
        "http://[fe80::1]/token",
    ] {
        let challenge = format!(r#"Bearer realm="{realm}",service="x""#);
        let faulty = Faulty::new(move |seen, _, base, _| {
            if seen.header("Authorization").is_none() {
                return Reply {
                    status: 401,
                    headers: vec![("WWW-Authenticate".into(), challenge.clone())],
                    body: Vec::new(),
                    declared: None,
                };
            }
            upstream(base, seen)
        });
        let before = faulty.seed_layout();
        assert_fails_cleanly(&faulty, &before, "refusing token realm");
        assert_eq!(
            faulty.proxy.seen().len(),
            1,
            "only the ping, no token request"
        );
    }
}

#[test]
fn fault_huge_descriptor_is_refused_before_downloading() {
    if !have_registry("fault_huge_descriptor_is_refused_before_downloading") {
        return;
    }
    let faulty = Faulty::new(|seen, _, base, image| {
        let mut reply = upstream(base, seen);
        if is_manifest(seen) {
            let size = format!("\"size\":{}", image.layers[1].data.len());
            let text = String::from_utf8(reply.body).unwrap();
            assert_eq!(text.matches(&size).count(), 1);
            reply.body = text
                .replace(&size, "\"size\":1000000000000000000")
                .into_bytes();
        }
        reply
    });
    let before = faulty.seed_layout();
    assert_fails_cleanly(&faulty, &before, "not enough space");
    assert!(
        faulty
            .proxy
            .seen()
            .iter()
            .all(|s| !s.path.contains("/blobs/")),
        "no blob requested"
    );
}

#[test]
fn unpack_layers_reads_what_fetch_image_writes() {
    if !have_registry("unpack_layers_reads_what_fetch_image_writes")
        || !prereq::require_commands("unpack_layers_reads_what_fetch_image_writes", &["busybox"])
    {
        return;
    }
    let registry = anonymous();
    // Docker schema2 on the registry, so the converted manifest is what unpack-layers reads.
    busybox_image()
        .media_types(MediaTypes::Docker)
        .build()
        .push(&registry, "library/busybox", "latest")
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci-images/busybox");
    pull(
        work.path(),
        &format!("docker://{}/library/busybox:latest", registry.host()),
        &layout,
        "latest",
        &[],
    );
    let bundle = work.path().join("unpacked-images/busybox");
    std::fs::create_dir(work.path().join("unpacked-images")).unwrap();
    let output = Command::new(bin("unpack-layers"))
        .args(["-q", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rootfs = bundle.join("rootfs");
    assert!(rootfs.join("bin/busybox").is_file());
    assert!(rootfs.join(tests::busybox::ADDED_BY_SECOND_LAYER).is_file());
    assert!(!rootfs
        .join(tests::busybox::DELETED_BY_SECOND_LAYER)
        .exists());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["args"], serde_json::json!(["/bin/sh"]));
}

#[test]
fn ctrl_c_mid_download_leaves_the_layout_as_it_was() {
    if !have_registry("ctrl_c_mid_download_leaves_the_layout_as_it_was") {
        return;
    }
    let faulty = Faulty::new(|seen, _, base, image| {
        if is_blob(seen, &image.layers[1].digest) {
            // Long enough for the test to press Ctrl-C while the temporary file exists.
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        upstream(base, seen)
    });
    let before = faulty.seed_layout();
    let child = fetch_image(faulty.work.path())
        .arg(format!("{}/faulty:v1", faulty.proxy.host))
        .arg(format!("oci:{}:v1", faulty.layout().display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !faulty
        .proxy
        .seen()
        .iter()
        .any(|s| is_blob(s, &faulty.big_layer()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the blob was never requested"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("interrupted"),
        "{}",
        stderr(&output)
    );
    assert_unchanged(&faulty.layout(), &before);
}
