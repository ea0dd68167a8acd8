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

fn start_registry(auth: Auth, tls: bool) -> Registry {
    Registry::start(RegistryConfig { auth, tls })
}

fn anonymous() -> Registry {
    start_registry(Auth::Anonymous, false)
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

/// The run failed (exit code 1) with `needle` in its error message.
fn assert_fails(output: &Output, needle: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
}

/// `skopeo copy` of `source` into `oci:DIR:TAG`, the peer to compare with.
fn skopeo_copy(flags: &[&str], source: &str, dest: &Path, tag: &str) {
    let status = Command::new("skopeo")
        .arg("copy")
        .args(flags)
        .arg(source)
        .arg(format!("oci:{}:{tag}", dest.display()))
        .status()
        .unwrap();
    assert!(status.success(), "skopeo copy {source}");
}

/// `umoci unpack --rootless` of `layout:tag` into `bundle`.
fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) {
    let unpack = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle)
        .output()
        .unwrap();
    assert!(
        unpack.status.success(),
        "{}",
        String::from_utf8_lossy(&unpack.stderr)
    );
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

fn read_manifest(layout: &Path, digest: &str) -> ImageManifest {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
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
        let manifest = read_manifest(layout, entry.digest().digest());
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

    skopeo_copy(&["--src-tls-verify=false"], &source, &theirs, "1.36");
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
    umoci_unpack(&ours, "1.36", &bundle);
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
    let manifest = read_manifest(&ours, &digest);
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

    skopeo_copy(
        &["--src-tls-verify=false"],
        &format!("docker://{source}"),
        &theirs,
        "latest",
    );
    let theirs_manifest = read_manifest(&theirs, &tags(&theirs)["latest"]);
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
    assert_fails(&output, "image or tag not found:");
    assert_fails(&output, "nothing/here:v9");
    assert!(blob_names(&layout).is_empty());
    assert!(!layout.join("index.json").exists());

    // Refused before any request: nothing logged by the registry.
    let before = registry.log().lines().count();
    let output = run(fetch_image(work.path())
        .arg(format!("{}/UPPER/case", registry.host()))
        .arg(&layout));
    assert_fails(&output, "must be lowercase");
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
    let registry = start_registry(
        Auth::Basic {
            user: "alice".into(),
            password: "s3cret".into(),
        },
        false,
    );
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
    assert_fails(&output, "credentials for 'alice' were refused");
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(blob_names(&other).is_empty());

    let output = run(fetch_image(work.path()).arg(&source).arg(&other));
    assert_fails(&output, "needs credentials");
}

/// Where the auth file goes, the environment that points at it, the key inside.
type AuthFileCase = (&'static str, Vec<(&'static str, &'static str)>, String);

#[test]
fn token_auth_from_every_auth_file_location() {
    if !have_registry("token_auth_from_every_auth_file_location") {
        return;
    }
    let registry = start_registry(
        Auth::Token {
            user: "bob".into(),
            password: "hunter2".into(),
        },
        false,
    );
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
    assert_fails(&output, "credentials for 'bob' were refused");
    let output = run(fetch_image(home.path())
        .args(["--no-creds", &source])
        .arg(&layout));
    assert_fails(&output, "needs credentials");

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
    let registry = start_registry(Auth::Anonymous, true);
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
    assert_fails(&output, "certificate");
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
        let manifest = read_manifest(&layout, &arm64_digest);
        assert_eq!(
            manifest.layers()[0].digest().to_string(),
            arm64.layers[0].digest
        );
        assert_layout_valid(&layout);

        let before = snapshot(&layout);
        let output = run(fetch_image(work.path())
            .args(["--platform", "linux/s390x", &source])
            .arg(&layout));
        assert_fails(&output, "no image for platform linux/s390x");
        assert_fails(&output, "linux/amd64, linux/arm64/v8, linux/arm/v7");
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

impl Reply {
    /// A reply with no body beyond `body`, and headers as given.
    fn new(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body,
            declared: None,
        }
    }

    /// A redirect (`status` 302 or 307) to `location`.
    fn redirect(status: u16, location: &str) -> Reply {
        Reply::new(status, &[("Location", location)], Vec::new())
    }

    /// Replaces header `name` (any case) by `value`.
    fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
    }
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

type Rule = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A one-request-per-connection HTTP/1.1 server; `rule` gets each request and returns
/// the reply. Runs until the test ends.
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
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let rule = Arc::clone(&rule);
                let log = Arc::clone(&log);
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let _ = match tls {
                        None => serve(stream, &*rule, &log),
                        Some(config) => serve_tls(stream, config, &*rule, &log),
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

fn serve(mut stream: TcpStream, rule: &Rule, log: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    exchange(&mut stream, rule, log)?;
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
) -> std::io::Result<()> {
    let connection = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, stream);
    exchange(&mut tls, rule, log)?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// Reads one GET (no body), asks `rule`, writes the reply.
fn exchange(
    stream: &mut (impl std::io::Read + std::io::Write),
    rule: &Rule,
    log: &Mutex<Vec<Seen>>,
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
    let reply = rule(&seen);
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

fn is_any_blob(seen: &Seen) -> bool {
    seen.path.contains("/blobs/")
}

fn is_manifest(seen: &Seen) -> bool {
    seen.path.contains("/manifests/")
}

/// A registry with one image (`faulty:v1`), and a proxy in front of it that passes each
/// request on, except where the test's rule answers instead or alters the answer.
struct Faulty {
    proxy: Proxy,
    image: Image,
    work: tempfile::TempDir,
    // Dropped after the proxy's last use: the registry behind it, the proxy's certificate.
    _registry: Registry,
    _cert: Option<tempfile::TempDir>,
}

impl Faulty {
    /// `answer` replies instead of the registry where it returns `Some`.
    fn answering(
        answer: impl Fn(&Seen, &Image) -> Option<Reply> + Send + Sync + 'static,
    ) -> Faulty {
        Self::start(anonymous(), small_image("faulty"), false, answer)
    }

    /// The registry answers, then `edit` changes the reply.
    fn altering(edit: impl Fn(&Seen, &Image, &mut Reply) + Send + Sync + 'static) -> Faulty {
        let image = small_image("faulty");
        let registry = anonymous();
        let base = registry.base_url();
        Self::start(registry, image, false, move |seen, image| {
            let mut reply = upstream(&base, seen);
            edit(seen, image, &mut reply);
            Some(reply)
        })
    }

    /// Pushes `image` to `registry` and puts the proxy (https with a self-signed
    /// certificate if `tls`) in front.
    fn start(
        registry: Registry,
        image: Image,
        tls: bool,
        answer: impl Fn(&Seen, &Image) -> Option<Reply> + Send + Sync + 'static,
    ) -> Faulty {
        image.push(&registry, "faulty", "v1").unwrap();
        let base = registry.base_url();
        let for_rule = image.clone();
        let rule: Box<Rule> =
            Box::new(move |seen| answer(seen, &for_rule).unwrap_or_else(|| upstream(&base, seen)));
        let (proxy, cert) = if tls {
            let (proxy, cert) = Proxy::start_tls(rule);
            (proxy, Some(cert))
        } else {
            (Proxy::start(rule), None)
        };
        Faulty {
            proxy,
            image,
            work: tempfile::tempdir().unwrap(),
            _registry: registry,
            _cert: cert,
        }
    }

    fn layout(&self) -> PathBuf {
        self.work.path().join("layout")
    }

    /// fetch-image `flags` PROXY/`reference` into the layout, tag v1.
    fn command(&self, flags: &[&str], reference: &str) -> Command {
        let mut cmd = fetch_image(self.work.path());
        cmd.args(flags)
            .arg(format!("{}/{reference}", self.proxy.host))
            .arg(format!("oci:{}:v1", self.layout().display()));
        cmd
    }

    fn fetch(&self, extra: &[&str]) -> Output {
        run(&mut self.command(&[&["--retry-times", "2"], extra].concat(), "faulty:v1"))
    }

    /// The big layer: the one worth cutting in the middle.
    fn big_layer(&self) -> String {
        self.image.layers[1].digest.clone()
    }

    /// How many requests for `digest` the proxy saw.
    fn blob_requests(&self, digest: &str) -> usize {
        self.proxy
            .seen()
            .iter()
            .filter(|s| is_blob(s, digest))
            .count()
    }

    /// A layout holding an unrelated image, to check that a failure leaves it alone.
    fn seed_layout(&self) -> Snapshot {
        small_image("bystander")
            .write_oci_layout(&self.layout(), "bystander")
            .unwrap();
        snapshot(&self.layout())
    }
}

/// The fetch fails with exit code 1 and a one-line error naming `needle`, prints no
/// digest, and leaves the layout as `before`.
fn assert_fails_cleanly(faulty: &Faulty, before: &Snapshot, needle: &str) {
    let output = faulty.fetch(&[]);
    assert_fails(&output, needle);
    let err = stderr(&output);
    assert!(
        err.starts_with("fetch-image: ") && err.lines().count() == 1,
        "{err}"
    );
    assert!(stdout(&output).is_empty());
    assert_unchanged(&faulty.layout(), before);
}

/// A layout seeded with a bystander image, a fetch through `faulty` that fails cleanly
/// with `needle`: the check most fault tests make.
fn assert_fault_refused(faulty: &Faulty, needle: &str) {
    let before = faulty.seed_layout();
    assert_fails_cleanly(faulty, &before, needle);
}

#[test]
fn fault_corrupted_blob_keeps_nothing() {
    if !have_registry("fault_corrupted_blob_keeps_nothing") {
        return;
    }
    let faulty = Faulty::altering(|seen, image, reply| {
        if is_blob(seen, &image.layers[1].digest) {
            let middle = reply.body.len() / 2;
            reply.body[middle] ^= 0xff;
        }
    });
    assert_fault_refused(&faulty, "does not match its digest");
}

#[test]
fn fault_over_long_body_is_refused() {
    if !have_registry("fault_over_long_body_is_refused") {
        return;
    }
    let faulty = Faulty::altering(|seen, image, reply| {
        if is_blob(seen, &image.layers[0].digest) {
            reply.body.extend_from_slice(b"and then some more bytes");
        }
    });
    assert_fault_refused(&faulty, "more than the");
}

#[test]
fn fault_endlessly_short_body_fails_after_retries() {
    if !have_registry("fault_endlessly_short_body_fails_after_retries") {
        return;
    }
    let faulty = Faulty::altering(|seen, image, reply| {
        if is_blob(seen, &image.layers[1].digest) {
            reply.body.truncate(reply.body.len().min(1000) / 2);
        }
    });
    assert_fault_refused(&faulty, "transfer failed");
    assert_eq!(
        faulty.blob_requests(&faulty.big_layer()),
        3,
        "one try and --retry-times 2"
    );
}

#[test]
fn fault_connection_cut_mid_blob_resumes_with_range() {
    if !have_registry("fault_connection_cut_mid_blob_resumes_with_range") {
        return;
    }
    let faulty = Faulty::altering(|seen, image, reply| {
        if is_blob(seen, &image.layers[1].digest) && seen.header("Range").is_none() {
            // Announce everything, send half, hang up.
            reply.declared = Some(reply.body.len());
            reply.body.truncate(reply.body.len() / 2);
        }
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
    assert!(blob_names(&faulty.layout()).contains(&layer.digest[7..]));
    assert_layout_valid(&faulty.layout());
}

#[test]
fn fault_500_and_429_are_retried() {
    if !have_registry("fault_500_and_429_are_retried") {
        return;
    }
    let failures = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&failures);
    let faulty = Faulty::answering(move |seen, image| {
        let blob = is_blob(seen, &image.layers[0].digest) || is_manifest(seen);
        if !blob || counted.fetch_add(1, Ordering::SeqCst) % 3 == 2 {
            return None;
        }
        let status = if is_manifest(seen) { 429 } else { 500 };
        let body = br#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#;
        Some(Reply::new(status, &[("Retry-After", "0")], body.to_vec()))
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
    let faulty = Faulty::altering(|_, _, reply| {
        reply.set_header(
            "Docker-Content-Digest",
            &format!("sha256:{}", "0".repeat(64)),
        );
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
    let faulty = Faulty::altering(|seen, _, reply| {
        if is_manifest(seen) {
            let text = String::from_utf8_lossy(&reply.body);
            reply.body = text
                .replacen("\"schemaVersion\"", " \"schemaVersion\"", 1)
                .into_bytes();
        }
    });
    let before = faulty.seed_layout();
    let by_digest = format!("faulty@{}", faulty.image.manifest_digest);
    let output = run(&mut faulty.command(&[], &by_digest));
    assert_fails(&output, "does not match its digest");
    assert_unchanged(&faulty.layout(), &before);
}

#[test]
fn fault_six_mib_manifest_is_refused() {
    if !have_registry("fault_six_mib_manifest_is_refused") {
        return;
    }
    let faulty = Faulty::answering(|seen, _| {
        if !is_manifest(seen) {
            return None;
        }
        let mut body = br#"{"schemaVersion":2,"annotations":{"x":""#.to_vec();
        body.resize(6 * 1024 * 1024, b'a');
        body.extend_from_slice(br#""}}"#);
        Some(Reply::new(200, &[("Content-Type", OCI_MANIFEST)], body))
    });
    assert_fault_refused(&faulty, "larger than the 4194304 bytes allowed");
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
        let faulty = Faulty::altering(move |seen, _, reply| {
            if is_manifest(seen) {
                let (body, content_type) = make(&String::from_utf8_lossy(&reply.body));
                reply.body = body.into_bytes();
                reply.set_header("Content-Type", &content_type);
            }
        });
        assert_fault_refused(&faulty, needle);
        let escaped = faulty.work.path().join("x");
        assert!(!escaped.exists());
    }
}

#[test]
fn fault_redirect_to_another_host_drops_authorization() {
    if !have_registry("fault_redirect_to_another_host_drops_authorization") {
        return;
    }
    let registry = start_registry(
        Auth::Basic {
            user: "carol".into(),
            password: "pw".into(),
        },
        false,
    );

    // The "object storage": serves blobs itself, fetching them with the test's own
    // credentials; records what fetch-image sent it.
    let storage_base = registry.base_url();
    let storage = Proxy::start(Box::new(move |seen| {
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
    let front = Faulty::start(
        registry,
        small_image("redirected"),
        false,
        move |seen, _| {
            let location = format!("http://{storage_host}{}", seen.path);
            is_any_blob(seen).then(|| Reply::redirect(307, &location))
        },
    );

    let digest = pull(
        front.work.path(),
        &format!("{}/faulty:v1", front.proxy.host),
        &front.layout(),
        "v1",
        &["--creds", "carol:pw"],
    );
    assert_eq!(digest, front.image.manifest_digest);
    assert_layout_valid(&front.layout());
    let at_storage = storage.seen();
    assert_eq!(at_storage.len(), 3, "config and two layers");
    assert!(
        at_storage
            .iter()
            .all(|s| s.header("Authorization").is_none()),
        "{at_storage:?}"
    );
    assert!(front
        .proxy
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
    let faulty = Faulty::answering(|seen, _| {
        is_any_blob(seen).then(|| Reply::redirect(302, "http://192.0.2.1/blob"))
    });
    assert_fault_refused(&faulty, "plain http is only allowed to loopback");
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
    let registry = start_registry(
        Auth::Token {
            user: "dave".into(),
            password: "pw".into(),
        },
        true,
    );
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
    assert_fails(&output, "credentials for 'dave' were refused");
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
    assert_fails(&output, "nests indexes more than 4 deep");
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
    skopeo_copy(&["-q", "--src-tls-verify=false"], &source, &theirs, "1");
    assert_eq!(blob_names(&ours), blob_names(&theirs));
    assert_eq!(
        std::fs::read(ours.join("index.json")).unwrap(),
        std::fs::read(theirs.join("index.json")).unwrap(),
        "index.json byte for byte as skopeo writes it"
    );

    let bundle = work.path().join("bundle");
    umoci_unpack(&ours, "1", &bundle);
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
    let plain = Proxy::start(Box::new({
        let base = registry.base_url();
        move |seen| upstream(&base, seen)
    }));
    let plain_host = plain.host.clone();
    let front = Faulty::start(registry, small_image("downgrade"), true, move |seen, _| {
        let location = format!("http://{plain_host}{}", seen.path);
        is_any_blob(seen).then(|| Reply::redirect(302, &location))
    });
    let before = front.seed_layout();
    let output = run(&mut front.command(&["--tls-verify=false"], "faulty:v1"));
    assert_fails(&output, "https must not be downgraded to plain http");
    assert!(
        front.proxy.seen().iter().any(is_any_blob),
        "went over https"
    );
    assert!(plain.seen().is_empty(), "nothing sent over plain http");
    assert_unchanged(&front.layout(), &before);
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
        let faulty = Faulty::answering(move |seen, _| {
            let challenge = [("WWW-Authenticate", challenge.as_str())];
            let anonymous = seen.header("Authorization").is_none();
            anonymous.then(|| Reply::new(401, &challenge, Vec::new()))
        });
        assert_fault_refused(&faulty, "refusing token realm");
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
    let faulty = Faulty::altering(|seen, image, reply| {
        if is_manifest(seen) {
            let size = format!("\"size\":{}", image.layers[1].data.len());
            let text = String::from_utf8_lossy(&reply.body).into_owned();
            assert_eq!(text.matches(&size).count(), 1);
            reply.body = text
                .replace(&size, "\"size\":1000000000000000000")
                .into_bytes();
        }
    });
    assert_fault_refused(&faulty, "not enough space");
    assert!(
        !faulty.proxy.seen().iter().any(is_any_blob),
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
    let faulty = Faulty::answering(|seen, image| {
        if is_blob(seen, &image.layers[1].digest) {
            // Long enough for the test to press Ctrl-C while the temporary file exists.
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        None
    });
    let before = faulty.seed_layout();
    let child = faulty
        .command(&[], "faulty:v1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while faulty.blob_requests(&faulty.big_layer()) == 0 {
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
