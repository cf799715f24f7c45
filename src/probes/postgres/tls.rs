//! TLS for the `postgres` probe with rustls, checking the server's certificate as libpq's
//! `sslmode` says: not at all (`allow`, `prefer`, `require` without a CA), its chain
//! (`verify-ca`), or its chain and name (`verify-full`).

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::config::probes::postgres::TlsMode;

/// Makes a TLS connection per connect, for the host tokio-postgres is connecting to.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
    /// Set once the server has agreed to TLS and the handshake began: `sslmode=prefer` tries
    /// again in plaintext only then, as libpq does (a refused connection is not retried).
    started: Arc<AtomicBool>,
}

impl MakeRustls {
    /// The client configuration for a mode; a CA file that cannot be read or holds no
    /// certificate is an error (every tick, until it is fixed).
    pub fn new(mode: TlsMode, ca_file: Option<&Path>) -> Result<MakeRustls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let verifier: Arc<dyn ServerCertVerifier> = match ca_file {
            Some(path) if matches!(mode, TlsMode::VerifyCa | TlsMode::VerifyFull) => {
                let roots = Arc::new(roots(path)?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?;
                Arc::new(Verify {
                    webpki: Some(webpki),
                    check_name: mode == TlsMode::VerifyFull,
                    algorithms,
                })
            }
            _ => Arc::new(Verify {
                webpki: None,
                check_name: false,
                algorithms,
            }),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustls {
            config: Arc::new(config),
            started: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Whether a connection made through this (or a clone of it) got as far as a handshake.
    pub fn handshake_started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }
}

fn roots(path: &Path) -> Result<RootCertStore, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("CA file {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("CA file {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "CA file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(roots)
}

/// The certificate check of one `sslmode`. Without a CA (libpq's `prefer` and `require`) the
/// connection is encrypted but the server is not authenticated; the handshake's signatures are
/// still checked.
#[derive(Debug)]
struct Verify {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // verify-ca: a certificate the CA signed is enough, whatever host it names.
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    /// A Unix socket has no host name (tokio-postgres passes ""): the server offers no TLS
    /// there, so no handshake needs one; a bad TCP host name fails at the handshake.
    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name = if domain.is_empty() {
            None
        } else {
            Some(
                ServerName::try_from(domain.to_string())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            )
        };
        Ok(RustlsConnect {
            config: self.config.clone(),
            name,
            started: self.started.clone(),
        })
    }
}

pub struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: Option<ServerName<'static>>,
    started: Arc<AtomicBool>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            self.started.store(true, Ordering::Relaxed);
            let name = self.name.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "no host name for TLS")
            })?;
            let connector = tokio_rustls::TlsConnector::from(self.config);
            let tls = connector.connect(name, stream).await.map_err(plain_words)?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

/// rustls names an unknown CA by its variant; say what it means for this probe.
fn plain_words(error: io::Error) -> io::Error {
    let unknown_issuer = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
        .is_some_and(|e| {
            matches!(
                e,
                Error::InvalidCertificate(CertificateError::UnknownIssuer)
            )
        });
    if unknown_issuer {
        return io::Error::new(
            io::ErrorKind::InvalidData,
            "the server's certificate is not signed by the CA in ca_file (UnknownIssuer)",
        );
    }
    error
}

pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    // SCRAM without channel binding: the `-PLUS` variant would need the certificate's
    // signature hash, and a server that offers both accepts this one.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}
