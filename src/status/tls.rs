//! TLS for the listener (`listen_tls`): the certificate and key files are read at start and
//! again when either file's modification time changes, looked at on each new connection, so
//! a certificate renewed on disk (certbot, cert-manager) is served without a restart. A new
//! pair that does not load keeps the one in use and is said once.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::ServerConfig;
use tracing::{error, info};

use crate::config::ListenTls;

fn load(tls: &ListenTls) -> Result<ServerConfig, String> {
    crate::tls::load_located(&tls.cert_file, &tls.key_file).map_err(|(_, e)| e)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The pair in use and the modification times it was read at.
pub struct Reloading {
    files: ListenTls,
    state: Mutex<State>,
}

struct State {
    config: Arc<ServerConfig>,
    /// The files' times when last looked at, whether the pair loaded or not: a bad pair is
    /// said once, not on every connection.
    seen: (Option<SystemTime>, Option<SystemTime>),
}

impl Reloading {
    /// The pair as it is now; an error if it does not load, which stops the start.
    pub fn new(files: ListenTls) -> Result<Reloading, String> {
        let seen = (modified(&files.cert_file), modified(&files.key_file));
        let config = Arc::new(load(&files)?);
        Ok(Reloading {
            files,
            state: Mutex::new(State { config, seen }),
        })
    }

    /// The configuration for a new connection: the files again if either changed since last
    /// looked at (two `stat` calls otherwise).
    pub fn current(&self) -> Arc<ServerConfig> {
        let now = (
            modified(&self.files.cert_file),
            modified(&self.files.key_file),
        );
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now != state.seen {
            state.seen = now;
            match load(&self.files) {
                Ok(config) => {
                    info!(cert_file = %self.files.cert_file.display(), "listen_tls: serving the certificate changed on disk");
                    state.config = Arc::new(config);
                }
                Err(e) => {
                    error!(error = %e, "listen_tls: the changed certificate or key does not load; still serving the previous pair");
                }
            }
        }
        state.config.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> ListenTls {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let files = ListenTls {
            cert_file: dir.join(format!("{name}.crt")),
            key_file: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert_file, cert.cert.pem()).unwrap();
        std::fs::write(&files.key_file, cert.signing_key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn each_bad_pair_is_said_with_the_file_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (pair(dir.path(), "a"), pair(dir.path(), "b"));
        assert!(load(&a).is_ok());
        let mismatched = ListenTls {
            cert_file: a.cert_file.clone(),
            key_file: b.key_file.clone(),
        };
        let e = load(&mismatched).unwrap_err();
        assert!(
            e.contains("b.key: this key is not the one of the certificate in"),
            "{e}"
        );
        let missing = ListenTls {
            cert_file: dir.path().join("none.crt"),
            key_file: a.key_file.clone(),
        };
        let e = load(&missing).unwrap_err();
        assert!(
            e.starts_with("cannot read ") && e.contains("none.crt"),
            "{e}"
        );
        let not_pem = dir.path().join("junk.crt");
        std::fs::write(&not_pem, "hello").unwrap();
        let e = load(&ListenTls {
            cert_file: not_pem,
            key_file: a.key_file.clone(),
        })
        .unwrap_err();
        assert!(e.contains("junk.crt: no PEM certificate"), "{e}");
        let e = load(&ListenTls {
            cert_file: a.cert_file.clone(),
            key_file: a.cert_file.clone(),
        })
        .unwrap_err();
        assert!(e.contains("a.crt: no PEM private key"), "{e}");
    }
}
