//! rustls configurations from PEM files, checked once at start.

use crate::config::ConfigError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A node's TLS files: its certificate chain and key, and the CA that signs the
/// certificates it accepts from clients and peers, and those of the peers it dials.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A node's two TLS roles: serving its port, and dialling its peers (mutual TLS: it
/// presents its own certificate, and checks theirs against `--tls-ca`).
#[derive(Clone, Debug)]
pub struct NodeTls {
    pub server: Arc<ServerConfig>,
    pub peer: Arc<ClientConfig>,
}

/// Both of a node's configurations from its files; the errors name the flag and file.
pub fn node_config(files: &TlsFiles) -> Result<NodeTls, ConfigError> {
    let server = server_config(files)?;
    let peer = client_config(&files.ca, Some((&files.cert, &files.key))).map_err(ConfigError)?;
    Ok(NodeTls { server, peer })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The node's side. A client may present no certificate (clients prove themselves with a
/// token, if at all); one that does must present a certificate signed by `--tls-ca`. A
/// peer must present one (`transport::peer_tls` checks that it did).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, ConfigError> {
    let certs = certificates("--tls-cert", &files.cert)?;
    let key = private_key("--tls-key", &files.key)?;
    let roots = Arc::new(roots("--tls-ca", &files.ca)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|error| ConfigError(format!("--tls-ca {}: {error}", files.ca.display())))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| ConfigError(format!("TLS: {error}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|error| {
            ConfigError(format!(
                "--tls-key {} does not go with --tls-cert {}: {error}",
                files.key.display(),
                files.cert.display()
            ))
        })?;
    Ok(Arc::new(config))
}

/// A client's side: it trusts the nodes whose certificates `ca` signed, and presents
/// `identity` (certificate, key) if given. `flags` names the CLI's flags in errors.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, String> {
    let roots = roots("--tls-ca", ca).map_err(|error| error.0)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = certificates("--tls-cert", cert).map_err(|error| error.0)?;
            let key_der = private_key("--tls-key", key).map_err(|error| error.0)?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|error| {
                    format!(
                        "--tls-key {} does not go with --tls-cert {}: {error}",
                        key.display(),
                        cert.display()
                    )
                })?
        }
    };
    Ok(Arc::new(config))
}

fn certificates(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| ConfigError(format!("{flag} {}: {error}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError(format!(
            "{flag} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn private_key(flag: &str, path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| {
        ConfigError(format!(
            "{flag} {}: no PEM private key read: {error}",
            path.display()
        ))
    })
}

fn roots(flag: &str, path: &Path) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(flag, path)? {
        roots
            .add(cert)
            .map_err(|error| ConfigError(format!("{flag} {}: {error}", path.display())))?;
    }
    Ok(roots)
}
