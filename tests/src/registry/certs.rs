//! Keys and certificates for the TLS and token modes, made with the `openssl` command in the
//! registry's temporary directory: a test CA and a server certificate for 127.0.0.1, and a
//! self-signed token-signing certificate for the registry's `rootcertbundle`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use super::{stdout_of, RegistryError};

/// Files of the test CA and the server certificate it signed.
pub(super) struct TlsFiles {
    /// A directory holding only `ca.crt`, for `--cert-dir` style options.
    pub ca_dir: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Makes `ca/ca.crt` (a CA valid for two days) and `tls/server.{crt,key}` for
/// `IP:127.0.0.1` and `DNS:localhost`, signed by it. EC P-256 keys: fast to generate.
pub(super) fn make_tls(dir: &Path) -> Result<TlsFiles, RegistryError> {
    let ca_dir = dir.join("ca");
    let tls = dir.join("tls");
    for d in [&ca_dir, &tls] {
        std::fs::create_dir_all(d).map_err(|e| RegistryError::io(d, e))?;
    }
    let ca_crt = ca_dir.join("ca.crt");
    let [ca_key, csr, server_key, server_cert, extensions] = [
        "ca.key",
        "server.csr",
        "server.key",
        "server.crt",
        "server.ext",
    ]
    .map(|f| tls.join(f));
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(&format!(
        "req -x509 {ec} -days 2 -subj /CN=test-ca -addext basicConstraints=critical,CA:TRUE \
         -addext keyUsage=critical,keyCertSign,cRLSign -keyout {} -out {}",
        ca_key.display(),
        ca_crt.display()
    ))?;
    openssl(&format!(
        "req {ec} -subj /CN=127.0.0.1 -keyout {} -out {}",
        server_key.display(),
        csr.display()
    ))?;
    let text = "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
                keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n";
    std::fs::write(&extensions, text).map_err(|e| RegistryError::io(&extensions, e))?;
    openssl(&format!(
        "x509 -req -days 2 -in {} -CA {} -CAkey {} -CAserial {} -CAcreateserial -extfile {} -out {}",
        csr.display(),
        ca_crt.display(),
        ca_key.display(),
        tls.join("ca.srl").display(),
        extensions.display(),
        server_cert.display()
    ))?;
    Ok(TlsFiles {
        ca_dir,
        server_cert,
        server_key,
    })
}

/// Makes `token/signing.key` (RSA 2048, for RS256) and its self-signed certificate
/// `token/signing.crt`, the registry's `rootcertbundle`. Returns (key, cert).
pub(super) fn make_token_signer(dir: &Path) -> Result<(PathBuf, PathBuf), RegistryError> {
    let token = dir.join("token");
    std::fs::create_dir_all(&token).map_err(|e| RegistryError::io(&token, e))?;
    let (key, cert) = (token.join("signing.key"), token.join("signing.crt"));
    openssl(&format!(
        "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-token-issuer -keyout {} -out {}",
        key.display(),
        cert.display()
    ))?;
    Ok((key, cert))
}

/// A rustls server configuration presenting the test server certificate (for the token
/// server's https realm).
pub(super) fn server_config(tls: &TlsFiles) -> Result<Arc<ServerConfig>, RegistryError> {
    let failed = |e: &dyn std::fmt::Display| RegistryError::Command {
        what: format!(
            "tls server configuration from {}",
            tls.server_cert.display()
        ),
        why: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(&tls.server_cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| failed(&e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.server_key).map_err(|e| failed(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| failed(&e))?;
    Ok(Arc::new(config))
}

/// The DER bytes of a PEM certificate (for a JWT header's `x5c`).
pub(super) fn certificate_der(cert: &Path) -> Result<Vec<u8>, RegistryError> {
    openssl_output(&format!("x509 -in {} -outform DER", cert.display()), &[])
}

/// An RSASSA-PKCS1-v1_5 SHA-256 signature (JWS `RS256`) of `data` with the PEM key.
pub(super) fn sign_rs256(key: &Path, data: &[u8]) -> Result<Vec<u8>, RegistryError> {
    openssl_output(&format!("dgst -sha256 -sign {}", key.display()), data)
}

fn openssl(args: &str) -> Result<(), RegistryError> {
    openssl_output(args, &[]).map(drop)
}

/// Runs `openssl ARGS` (split at whitespace: the paths are temporary directories without
/// spaces) with `input` on stdin; its stdout, or an error carrying its stderr.
fn openssl_output(args: &str, input: &[u8]) -> Result<Vec<u8>, RegistryError> {
    use std::io::Write;
    use std::process::Stdio;
    let what = format!("openssl {args}");
    let mut child = Command::new("openssl")
        .args(args.split_whitespace())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RegistryError::command(&what, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    stdout_of(&what, child.wait_with_output())
}
