//! TLS server configuration from PEM files (the listener's `listen_tls`), below config so
//! `runner check` loads a pair exactly as the listener will.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Which of the two files a problem is in, so `runner check` points at its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Cert,
    Key,
}

/// The server configuration for the certificate chain in `cert_path` and its key, or the
/// file a problem is in: a file unreadable, no PEM certificate or key in it, or a key that is
/// not the certificate's.
pub fn load_located(cert_path: &Path, key_path: &Path) -> Result<ServerConfig, (Part, String)> {
    let cert_pem = read(cert_path).map_err(|e| (Part::Cert, e))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            (
                Part::Cert,
                format!("{}: not a PEM certificate: {e}", cert_path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err((
            Part::Cert,
            format!(
                "{}: no PEM certificate (`-----BEGIN CERTIFICATE-----`) in it",
                cert_path.display()
            ),
        ));
    }
    let key_pem = read(key_path).map_err(|e| (Part::Key, e))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        (
            Part::Key,
            format!(
                "{}: no PEM private key in it (PKCS#8, PKCS#1 or SEC1): {e}",
                key_path.display()
            ),
        )
    })?;
    let builder =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| (Part::Cert, e.to_string()))?;
    builder
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => (
                Part::Key,
                format!(
                    "{}: this key is not the one of the certificate in {}",
                    key_path.display(),
                    cert_path.display()
                ),
            ),
            e => (
                Part::Key,
                format!(
                    "{} and {}: cannot be used: {e}",
                    cert_path.display(),
                    key_path.display()
                ),
            ),
        })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
