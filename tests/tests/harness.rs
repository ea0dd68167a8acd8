//! Tests of the fixtures themselves: each one must be the real thing before other tests
//! lean on it.

use tests::{mountns, prereq};

/// A tmpfs mounted inside the private namespace is visible there and never on the host.
#[test]
fn mountns_changes_are_invisible_to_the_host() {
    if !prereq::require_root("mountns_changes_are_invisible_to_the_host") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().to_owned();
    let before = mountns::mountinfo();

    let inside = mountns::in_private_mount_namespace(|| {
        nix::mount::mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| format!("mount tmpfs: {e}"))?;
        let table = mountns::mountinfo();
        if !table.contains(&format!(" {} ", target.display())) {
            return Err(format!("tmpfs not in the namespace's mountinfo:\n{table}"));
        }
        Ok(())
    });

    assert_eq!(inside, Ok(()));
    assert_eq!(mount_points(&mountns::mountinfo()), mount_points(&before));
    assert!(!mountns::mountinfo().contains(&format!(" {} ", dir.path().display())));
}

/// Errors and panics of the closure come back to the parent as `Err`.
#[test]
fn mountns_reports_errors_and_panics() {
    if !prereq::require_root("mountns_reports_errors_and_panics") {
        return;
    }
    let err = mountns::in_private_mount_namespace(|| Err("it failed".into()));
    assert_eq!(err, Err("it failed".to_string()));
    let panicked = mountns::in_private_mount_namespace(|| panic!("boom"));
    assert!(panicked.unwrap_err().contains("boom"));
}

/// `private_command` runs its program with `/` private in a namespace of its own.
#[test]
fn mountns_private_command_has_no_shared_mounts() {
    if !prereq::require_root("mountns_private_command_has_no_shared_mounts")
        || !prereq::require_commands("mountns_private_command_has_no_shared_mounts", &["unshare"])
    {
        return;
    }
    let output = mountns::private_command("cat")
        .arg("/proc/self/mountinfo")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(!table.contains("shared:"), "{table}");
}

/// `bins::bin` points into the profile directory of this very test run.
#[test]
fn bins_profile_dir_is_the_parent_of_deps() {
    let dir = tests::bins::profile_dir();
    let exe = std::env::current_exe().unwrap();
    assert_eq!(exe.parent().unwrap().parent().unwrap(), dir);
}

/// The mount points (field 5) of a mountinfo table, in order.
fn mount_points(table: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(String::from)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Image builder and busybox image

use std::path::Path;
use std::process::Command;

use tests::busybox::{self, busybox_image, busybox_rootfs};
use tests::image::{Compression, ImageBuilder, IndexBuilder, Layer, MediaTypes};
use tests::registry::{Auth, Registry, RegistryConfig, Upload};

/// Runs a command, panicking with its stderr when it fails; returns its stdout.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every entry type, mode bit, owner, mtime and xattr reads back as built.
#[test]
fn layer_entries_read_back_with_their_metadata() {
    let layer = Layer::new()
        .dir("d", 0o1777)
        .file("d/f", "data", 0o4755)
        .owner(1000, 100)
        .mtime(42)
        .xattr("user.note", "hi")
        .symlink("d/s", "../../etc/passwd")
        .hardlink("d/h", "d/f")
        .char_device("d/null", 1, 3)
        .block_device("d/loop", 7, 0)
        .fifo("d/p")
        .whiteout("d/gone")
        .opaque("d");
    let tar = layer.to_tar();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let h = entry.header().clone();
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let xattrs: Vec<(String, Vec<u8>)> = entry
            .pax_extensions()
            .unwrap()
            .map(|exts| {
                exts.map(|e| e.unwrap())
                    .map(|e| (e.key().unwrap().to_string(), e.value_bytes().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        seen.push((path, h.entry_type(), h.mode().unwrap(), xattrs));
        if seen.len() == 2 {
            assert_eq!(
                (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
                (1000, 100, 42)
            );
        }
        if seen.len() == 5 {
            assert_eq!(
                (h.device_major().unwrap(), h.device_minor().unwrap()),
                (Some(1), Some(3))
            );
        }
    }
    let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "d/",
            "d/f",
            "d/s",
            "d/h",
            "d/null",
            "d/loop",
            "d/p",
            "d/.wh.gone",
            "d/.wh..wh..opq"
        ]
    );
    assert_eq!(seen[0].2, 0o1777);
    assert_eq!(seen[1].2, 0o4755);
    assert_eq!(
        seen[1].3,
        [("SCHILY.xattr.user.note".to_string(), b"hi".to_vec())]
    );
    assert_eq!(seen[2].1, tar::EntryType::Symlink);
    assert_eq!(seen[3].1, tar::EntryType::Link);
    assert_eq!(seen[4].1, tar::EntryType::Char);
    assert_eq!(seen[5].1, tar::EntryType::Block);
    assert_eq!(seen[6].1, tar::EntryType::Fifo);
}

/// Raw entries keep their hostile names and their header exactly as the test made it.
#[test]
fn raw_entries_are_not_sanitised() {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    let long = "a/".repeat(2000);
    let layer = Layer::new()
        .raw(header.clone(), "/", "")
        .raw(header, long.as_bytes(), "")
        .file("/../x", "", 0o644);
    let tar = layer.to_tar();
    let mut archive = tar::Archive::new(&tar[..]);
    let names: Vec<Vec<u8>> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path_bytes().into_owned())
        .collect();
    assert_eq!(names, [b"/".to_vec(), long.into_bytes(), b"/../x".to_vec()]);
}

/// Every compression decompresses to the same tar, whose digest is the diff_id.
#[test]
fn compressed_layers_keep_their_diff_id() {
    let layer = Layer::new().file("a", "x".repeat(10_000), 0o644);
    let tar = layer.to_tar();
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let image = ImageBuilder::new()
            .layer(layer.clone(), compression)
            .build();
        let blob = &image.layers[0];
        let plain = match compression {
            Compression::None => blob.data.clone(),
            Compression::Gzip => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&blob.data[..]),
                    &mut out,
                )
                .unwrap();
                out
            }
            Compression::Zstd => zstd::decode_all(&blob.data[..]).unwrap(),
        };
        assert_eq!(plain, tar);
        assert_eq!(blob.diff_id, tests::image::sha256_digest(&tar));
        let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], blob.diff_id.as_str());
    }
}

/// Docker media types: manifest, config and layers carry Docker's strings.
#[test]
fn docker_media_types_are_used_throughout() {
    let image = ImageBuilder::new()
        .layer(Layer::new().file("a", "1", 0o644), Compression::Gzip)
        .media_types(MediaTypes::Docker)
        .build();
    let manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let list = IndexBuilder::new().image(image).build();
    let list: serde_json::Value = serde_json::from_slice(&list.manifest).unwrap();
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
}

/// skopeo reads the layout: the digest it reports is the manifest's, with both layers.
#[test]
fn layout_is_accepted_by_skopeo() {
    let test = "layout_is_accepted_by_skopeo";
    if !tests::prereq::require_commands(test, &["skopeo", "busybox"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let image = busybox_image().label("org.example", "yes").build();
    image.write_oci_layout(&layout, "latest").unwrap();
    let other = ImageBuilder::new()
        .layer(Layer::new().dir("x", 0o755), Compression::Zstd)
        .build();
    other.write_oci_layout(&layout, "other").unwrap();

    let target = format!("oci:{}:latest", layout.display());
    let inspect = run(Command::new("skopeo").args(["inspect", &target]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], image.manifest_digest.as_str());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(inspect["Labels"]["org.example"], "yes");
    let raw = run(Command::new("skopeo").args(["inspect", "--raw", &target]));
    assert_eq!(raw.as_bytes(), image.manifest);
    let other_target = format!("oci:{}:other", layout.display());
    run(Command::new("skopeo").args(["inspect", &other_target]));
}

/// An index over two platforms is a valid layout for skopeo, which picks by platform.
#[test]
fn index_layout_is_accepted_by_skopeo() {
    let test = "index_layout_is_accepted_by_skopeo";
    if !tests::prereq::require_commands(test, &["skopeo"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layer = || Layer::new().file("arch", "x", 0o644);
    let amd = ImageBuilder::new()
        .layer(layer(), Compression::Gzip)
        .platform("linux", "amd64", None)
        .build();
    let arm = ImageBuilder::new()
        .layer(layer().file("arm", "", 0o644), Compression::Gzip)
        .platform("linux", "arm64", Some("v8"))
        .build();
    let index = IndexBuilder::new()
        .image(amd.clone())
        .image(arm.clone())
        .build();
    index.write_oci_layout(dir.path(), "multi").unwrap();
    let target = format!("oci:{}:multi", dir.path().display());
    let raw = run(Command::new("skopeo").args(["inspect", "--raw", &target]));
    assert_eq!(raw.as_bytes(), index.manifest);
    let picked = run(Command::new("skopeo").args(["--override-arch", "arm64", "inspect", &target]));
    let picked: serde_json::Value = serde_json::from_str(&picked).unwrap();
    // skopeo reports the digest of the reference (the index) and the picked image's details.
    assert_eq!(picked["Digest"], index.manifest_digest.as_str());
    assert_eq!(picked["Architecture"], "arm64");
    assert_eq!(picked["Layers"][0], arm.layers[0].digest.as_str());
}

/// umoci unpacks the busybox layout: the whiteout removed the file, the rest is there.
#[test]
fn layout_unpacks_with_umoci() {
    let test = "layout_unpacks_with_umoci";
    if !tests::prereq::require_root(test)
        || !tests::prereq::require_commands(test, &["umoci", "busybox"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    busybox_image()
        .build()
        .write_oci_layout(&dir.path().join("layout"), "latest")
        .unwrap();
    run(Command::new("umoci").current_dir(dir.path()).args([
        "unpack",
        "--image",
        "layout:latest",
        "bundle",
    ]));
    let rootfs = dir.path().join("bundle/rootfs");
    assert_rootfs_is_busybox(&rootfs);
}

/// The tree busybox_rootfs writes, and the one umoci unpacks, look the same.
fn assert_rootfs_is_busybox(rootfs: &Path) {
    use std::os::unix::fs::PermissionsExt;
    assert!(rootfs.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new(busybox::BUSYBOX)
    );
    assert!(rootfs.join("etc/passwd").is_file());
    assert!(rootfs.join("etc/group").is_file());
    assert!(rootfs.join(busybox::ADDED_BY_SECOND_LAYER).is_file());
    assert!(!rootfs.join(busybox::DELETED_BY_SECOND_LAYER).exists());
    let mode = |p: &str| {
        std::fs::metadata(rootfs.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("tmp"), 0o1777);
    assert_eq!(mode("root"), 0o700);
    assert_eq!(mode("bin/busybox"), 0o755);
}

/// busybox_rootfs is a working root: `/bin/sh` runs inside a chroot.
#[test]
fn busybox_rootfs_runs_in_a_chroot() {
    let test = "busybox_rootfs_runs_in_a_chroot";
    if !tests::prereq::require_root(test)
        || !tests::prereq::require_commands(test, &["busybox", "chroot"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(dir.path()).unwrap();
    assert_rootfs_is_busybox(dir.path());
    let out = run(Command::new("chroot").arg(dir.path()).args([
        "/bin/sh",
        "-c",
        "echo hi from $(cat /etc/issue)",
    ]));
    assert!(out.starts_with("hi from busybox test image"), "{out}");
}

// ---------------------------------------------------------------------------------------
// Registry

fn registry_prereqs(test: &str) -> bool {
    tests::prereq::require_commands(test, tests::registry::REQUIRED_COMMANDS)
}

fn credentials() -> (String, String) {
    ("tester".to_string(), "s3cret pass".to_string())
}

fn token_auth() -> Auth {
    let (user, password) = credentials();
    Auth::Token { user, password }
}

/// GET /v2/ with optional Basic credentials; the status.
fn ping(registry: &Registry, basic: Option<(&str, &str)>) -> u16 {
    let mut request = registry.client().get(registry.url(""));
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, Some(password));
    }
    request.send().unwrap().status().as_u16()
}

/// GET /v2/ with a bearer token; the status.
fn ping_with_token(registry: &Registry, token: &str) -> u16 {
    let request = registry.client().get(registry.url("")).bearer_auth(token);
    request.send().unwrap().status().as_u16()
}

/// A request to the token realm for `scope`, with optional Basic credentials.
fn token_request(
    registry: &Registry,
    scope: &str,
    basic: Option<(&str, &str)>,
) -> reqwest::blocking::Response {
    let realm = registry.token_realm().unwrap();
    let url = format!("{realm}?service={}&scope={scope}", tests::registry::SERVICE);
    let mut request = registry.client().get(url);
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, Some(password));
    }
    request.send().unwrap()
}

/// The token of a token response's JSON body.
fn token_of(response: reqwest::blocking::Response) -> String {
    let body: serde_json::Value = serde_json::from_str(&response.text().unwrap()).unwrap();
    body["token"].as_str().unwrap().to_string()
}

/// Every mode, over http and https: `/v2/` answers, with the credentials the mode wants and
/// never with wrong ones.
#[test]
fn registry_answers_in_every_mode_and_refuses_wrong_credentials() {
    if !registry_prereqs("registry_answers_in_every_mode_and_refuses_wrong_credentials") {
        return;
    }
    let (user, password) = credentials();
    let modes = [
        Auth::Anonymous,
        Auth::Basic {
            user: user.clone(),
            password: password.clone(),
        },
        token_auth(),
    ];
    for tls in [false, true] {
        for auth in modes.clone() {
            let registry = Registry::start(RegistryConfig {
                auth: auth.clone(),
                tls,
            });
            let scheme = if tls { "https" } else { "http" };
            assert!(registry
                .base_url()
                .starts_with(&format!("{scheme}://127.0.0.1:")));
            let ok = match auth {
                Auth::Anonymous => ping(&registry, None),
                Auth::Basic { .. } => {
                    assert_eq!(ping(&registry, None), 401, "{auth:?} tls={tls}");
                    assert_eq!(ping(&registry, Some((&user, "wrong"))), 401, "{auth:?}");
                    ping(&registry, Some((&user, &password)))
                }
                Auth::Token { .. } => {
                    assert_eq!(ping(&registry, None), 401, "{auth:?} tls={tls}");
                    let scope = "repository:a/b:pull";
                    let wrong = token_request(&registry, scope, Some((&user, "wrong")));
                    assert_eq!(wrong.status().as_u16(), 401);
                    let right = token_request(&registry, scope, Some((&user, &password)));
                    ping_with_token(&registry, &token_of(right))
                }
            };
            assert_eq!(ok, 200, "{auth:?} tls={tls}: {}", registry.log());
            assert!(registry.log().contains("GET /v2/"), "{}", registry.log());
        }
    }
}

#[test]
fn registry_tls_is_trusted_through_its_ca_only() {
    if !registry_prereqs("registry_tls_is_trusted_through_its_ca_only") {
        return;
    }
    let registry = Registry::start(RegistryConfig {
        auth: Auth::Anonymous,
        tls: true,
    });
    assert!(registry.base_url().starts_with("https://"));
    assert_eq!(ping(&registry, None), 200);
    let ca_dir = registry.ca_dir().unwrap();
    let names: Vec<_> = std::fs::read_dir(ca_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["ca.crt"]);
    let untrusting = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    assert!(
        untrusting.get(registry.url("")).send().is_err(),
        "a client without the CA must fail"
    );
}

/// Token mode: 401 with a Bearer challenge naming the realm; the token server refuses wrong
/// credentials and its tokens open the registry.
#[test]
fn registry_token_flow_like_docker_hub() {
    if !registry_prereqs("registry_token_flow_like_docker_hub") {
        return;
    }
    let (user, password) = credentials();
    let registry = Registry::start(RegistryConfig {
        auth: token_auth(),
        tls: false,
    });
    let response = registry.client().get(registry.url("")).send().unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let challenge = response.headers()["WWW-Authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let realm = registry.token_realm().unwrap();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{realm}\"")),
        "{challenge}"
    );

    let scope = "repository:demo/busybox:pull,push";
    let get_token = |creds| token_request(&registry, scope, creds);
    assert_eq!(get_token(Some((&user, "wrong"))).status().as_u16(), 401);
    let other_service = format!("{realm}?service=elsewhere&scope={scope}");
    let response = registry
        .client()
        .get(other_service)
        .basic_auth(&user, Some(&password));
    assert_eq!(
        response.send().unwrap().status().as_u16(),
        400,
        "a token for another service"
    );
    let body: serde_json::Value =
        serde_json::from_str(&get_token(Some((&user, &password))).text().unwrap()).unwrap();
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["token"], body["access_token"]);
    let token = body["token"].as_str().unwrap();
    assert_eq!(ping_with_token(&registry, token), 200, "{}", registry.log());
    assert!(registry.token_requests() >= 2);

    let image = ImageBuilder::new()
        .layer(Layer::new().file("f", "1", 0o644), Compression::Gzip)
        .build();
    image.push(&registry, "demo/busybox", "v1").unwrap();
    // Without credentials, a token grants nothing until anonymous pull is allowed.
    let anonymous = token_of(get_token(None));
    let pull = |token: &str| {
        let url = registry.url("demo/busybox/manifests/v1");
        let accept = image.media_type.as_str();
        let response = registry
            .client()
            .get(url)
            .header("Accept", accept)
            .bearer_auth(token)
            .send();
        response.unwrap().status().as_u16()
    };
    assert_eq!(pull(&anonymous), 401);
    registry.set_anonymous_pull(true);
    assert_eq!(pull(&token_of(get_token(None))), 200);
}

/// A pushed image reads back through the registry API byte for byte, for both upload
/// methods and both media-type families, over TLS with Basic auth.
#[test]
fn pushed_image_reads_back_with_matching_digests() {
    if !registry_prereqs("pushed_image_reads_back_with_matching_digests")
        || !tests::prereq::require_commands(
            "pushed_image_reads_back_with_matching_digests",
            &["busybox"],
        )
    {
        return;
    }
    let (user, password) = credentials();
    let registry = Registry::start(RegistryConfig {
        auth: Auth::Basic { user, password },
        tls: true,
    });
    let oci = busybox_image().build();
    let docker = busybox_image().media_types(MediaTypes::Docker).build();
    oci.push(&registry, "library/busybox", "oci").unwrap();
    docker
        .push_with(
            &registry,
            "library/busybox",
            "docker",
            Upload::Chunked(300_000),
        )
        .unwrap();

    for (image, tag) in [(&oci, "oci"), (&docker, "docker")] {
        let (content_type, manifest) = registry
            .remote()
            .get_manifest("library/busybox", tag)
            .unwrap();
        assert_eq!(content_type, image.media_type);
        assert_eq!(manifest, image.manifest);
        for (digest, bytes) in image
            .blobs()
            .into_iter()
            .filter(|(d, _)| *d != image.manifest_digest)
        {
            let fetched = registry
                .remote()
                .get_blob("library/busybox", digest)
                .unwrap();
            assert_eq!(tests::image::sha256_digest(&fetched), digest);
            assert_eq!(fetched, bytes);
        }
    }
    let requests = registry.requests();
    let patches = requests.iter().filter(|r| r.starts_with("PATCH ")).count();
    // The busybox layer (about 1 MB compressed) in 300 kB chunks takes several PATCHes.
    assert!(patches >= 4, "{requests:#?}");
}

/// An index pushed by tag reads back as the same bytes; its images by digest; an index
/// nesting an index is accepted too.
#[test]
fn pushed_index_reads_back() {
    if !registry_prereqs("pushed_index_reads_back") {
        return;
    }
    let registry = Registry::start(RegistryConfig::default());
    let one = |arch: &str| {
        ImageBuilder::new()
            .layer(Layer::new().file("arch", arch, 0o644), Compression::Gzip)
            .platform("linux", arch, None)
            .media_types(MediaTypes::Docker)
            .build()
    };
    let index = IndexBuilder::new()
        .image(one("amd64"))
        .image(one("arm64"))
        .build();
    index.push(&registry, "multi", "latest").unwrap();
    let (content_type, bytes) = registry.remote().get_manifest("multi", "latest").unwrap();
    assert_eq!(
        content_type,
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(bytes, index.manifest);
    let (_, arm) = registry
        .remote()
        .get_manifest("multi", &index.images[1].manifest_digest)
        .unwrap();
    assert_eq!(arm, index.images[1].manifest);

    let oci = |arch: &str| {
        let layer = Layer::new().file("arch", arch, 0o644);
        ImageBuilder::new()
            .layer(layer, Compression::Gzip)
            .platform("linux", arch, None)
            .build()
    };
    let inner = IndexBuilder::new().image(oci("riscv64")).build();
    let outer = IndexBuilder::new()
        .image(oci("amd64"))
        .index(inner.clone())
        .build();
    outer.push(&registry, "nested", "latest").unwrap();
    let (_, bytes) = registry.remote().get_manifest("nested", "latest").unwrap();
    let document: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        document["manifests"][1]["digest"],
        inner.manifest_digest.as_str()
    );
    let (content_type, _) = registry
        .remote()
        .get_manifest("nested", &inner.manifest_digest)
        .unwrap();
    assert_eq!(content_type, "application/vnd.oci.image.index.v1+json");
}

/// skopeo, a real distribution client, pulls from the token registry with credentials
/// (challenge, token request, bearer), over http and over TLS with --src-cert-dir.
#[test]
fn skopeo_pulls_through_token_auth_and_tls() {
    let test = "skopeo_pulls_through_token_auth_and_tls";
    if !registry_prereqs(test) || !tests::prereq::require_commands(test, &["skopeo", "busybox"]) {
        return;
    }
    let image = busybox_image().build();
    let dir = tempfile::tempdir().unwrap();
    let (user, password) = credentials();

    let token_registry = Registry::start(RegistryConfig {
        auth: token_auth(),
        tls: false,
    });
    image
        .push(&token_registry, "demo/busybox", "latest")
        .unwrap();
    let source = format!("docker://{}/demo/busybox:latest", token_registry.host());
    let dest = format!("oci:{}:token", dir.path().join("out").display());
    let creds = format!("{user}:{password}");
    let before = token_registry.token_requests();
    run(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &source,
        &dest,
    ]));
    assert!(
        token_registry.token_requests() > before,
        "skopeo asked for a token"
    );

    // TLS and tokens together, as Docker Hub: the realm is https with the same test CA.
    let tls_registry = Registry::start(RegistryConfig {
        auth: token_auth(),
        tls: true,
    });
    assert!(tls_registry
        .token_realm()
        .unwrap()
        .starts_with("https://127.0.0.1:"));
    image.push(&tls_registry, "demo/busybox", "latest").unwrap();
    let source = format!("docker://{}/demo/busybox:latest", tls_registry.host());
    let dest = format!("oci:{}:tls", dir.path().join("out").display());
    let cert_dir = tls_registry.ca_dir().unwrap().to_str().unwrap().to_string();
    let before = tls_registry.token_requests();
    let copy = [
        "copy",
        "--src-cert-dir",
        &cert_dir,
        "--src-creds",
        &creds,
        &source,
        &dest,
    ];
    run(Command::new("skopeo").args(copy));
    assert!(
        tls_registry.token_requests() > before,
        "skopeo asked the https realm"
    );
}

/// The registry process and its files are gone after drop.
#[test]
fn registry_is_gone_after_drop() {
    if !registry_prereqs("registry_is_gone_after_drop") {
        return;
    }
    let registry = Registry::start(RegistryConfig::default());
    let url = registry.url("");
    drop(registry);
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    assert!(client.get(url).send().is_err());
}

// ---------------------------------------------------------------------------------------
// image-builder (demo.sh --offline seeds its registry with it)

/// `image-builder busybox --push` lands the image in a registry under the digest it prints,
/// and `--oci` writes the same manifest into a layout.
#[test]
fn image_builder_pushes_and_writes_layouts() {
    let test = "image_builder_pushes_and_writes_layouts";
    if !registry_prereqs(test) || !tests::prereq::require_commands(test, &["busybox"]) {
        return;
    }
    let builder = tests::bins::bin("image-builder");
    let registry = Registry::start(RegistryConfig::default());
    let target = format!("{}/busybox:latest", registry.host());
    let pushed = run(Command::new(&builder).args(["busybox", "--push", &target]));
    let (_, manifest) = registry.remote().get_manifest("busybox", "latest").unwrap();
    assert_eq!(pushed.trim(), tests::image::sha256_digest(&manifest));

    let dir = tempfile::tempdir().unwrap();
    let layout = format!("{}:v1", dir.path().display());
    let written = run(Command::new(&builder).args(["busybox", "--oci", &layout]));
    assert_eq!(written, pushed);
    let index = std::fs::read_to_string(dir.path().join("index.json")).unwrap();
    assert!(
        index.contains("\"org.opencontainers.image.ref.name\":\"v1\""),
        "{index}"
    );

    let refused = Command::new(&builder)
        .args(["busybox", "--push", "example.com/x"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------
// prereq: skip by hand, fail under CI

/// Needs a command that does not exist; run only by `prereq_skips_by_hand_and_fails_under_ci`.
#[test]
#[ignore = "run by prereq_skips_by_hand_and_fails_under_ci in a child process"]
fn needs_a_missing_command() {
    if !tests::prereq::require_commands("needs_a_missing_command", &["no-such-command-here"]) {
        return;
    }
    panic!("require_commands found a command that does not exist");
}

/// The same test binary, run for `needs_a_missing_command` alone: by hand it passes with a
/// SKIP line naming the command; with CI=true it fails, naming it too.
#[test]
fn prereq_skips_by_hand_and_fails_under_ci() {
    let child = |ci: bool| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args([
            "--ignored",
            "--exact",
            "needs_a_missing_command",
            "--nocapture",
        ]);
        if ci {
            command.env("CI", "true");
        } else {
            command.env_remove("CI");
        }
        let output = command.output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    };
    let (passed, text) = child(false);
    assert!(passed, "{text}");
    assert!(
        text.contains("SKIP needs_a_missing_command: command(s) not found: no-such-command-here"),
        "{text}"
    );
    let (passed, text) = child(true);
    assert!(!passed, "{text}");
    assert!(
        text.contains("missing prerequisite under CI=true"),
        "{text}"
    );
    assert!(text.contains("no-such-command-here"), "{text}");
}
