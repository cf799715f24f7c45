//! `listen_tls`: the listener over HTTPS as Prometheus scrapes it (a client trusting the test
//! CA), a certificate renewed on disk served from the next connection, a bad renewal keeping
//! the pair in use, plain HTTP to the port refused, `listen_auth` still asked, `runner check`
//! locating a bad pair, and `runner healthcheck` over https.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::support::{PATIENCE, Running, command, jobs_file};

/// A CA and a certificate for `localhost` and 127.0.0.1 signed by it.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki(ca_name: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Writes the pair where the jobs file names it, dated `age_s` seconds from now, so a rewrite
/// within the same clock tick still changes the modification time.
fn install(dir: &Path, pki: &Pki, key_pem: &str, age_s: u64) {
    let when = SystemTime::now() + Duration::from_secs(age_s);
    for (name, text) in [
        ("tls/server.crt", pki.cert_pem.as_str()),
        ("tls/server.key", key_pem),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

/// A TLS client trusting `cas`, as Prometheus with `tls_config: { ca_file }`.
fn client(cas: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots
            .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// One HTTPS request: the status, the body and the certificate the server showed.
fn get(
    config: &Arc<rustls::ClientConfig>,
    port: u16,
    path: &str,
    headers: &str,
) -> (u16, String, Vec<u8>) {
    let connection =
        rustls::ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut tls =
        rustls::StreamOwned::new(connection, TcpStream::connect(("127.0.0.1", port)).unwrap());
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    // The server closes without close_notify after its answer; what came is whole.
    let _ = tls.read_to_end(&mut response);
    let served = tls.conn.peer_certificates().unwrap()[0].as_ref().to_vec();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string(), served)
}

/// A scheduler with one monitor serving over TLS with `listen_auth`; it, its port and folder.
fn start(pki: &Pki) -> (Running, u16, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    install(dir.path(), pki, &pki.key_pem, 0);
    let file = jobs_file(
        dir.path(),
        "host: tls-test\nlisten_auth: { bearer_token: \"${TLS_TEST_TOKEN}\" }\nlisten_tls: { cert_file: tls/server.crt, key_file: tls/server.key }\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 1s\"\n    probes: [{ type: memory }]\n",
    );
    let mut cmd = command(&["--jobs", file.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    cmd.env("TLS_TEST_TOKEN", "tok-tls");
    let mut running = Running::spawn(cmd);
    let line = running.wait_for_line("serving the status page", PATIENCE);
    let port = line
        .split("https://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no https port in {line}"));
    (running, port, dir, file)
}

const AUTH: &str = "Authorization: Bearer tok-tls\r\n";

#[test]
fn metrics_are_scraped_over_https_and_a_renewed_certificate_is_served_next() {
    let (first, second) = (pki("first CA"), pki("second CA"));
    let (mut running, port, dir, _file) = start(&first);
    let trusting_both = client(&[&first.ca_pem, &second.ca_pem]);

    let started = Instant::now();
    let body = loop {
        let (status, body, served) = get(&trusting_both, port, "/metrics", AUTH);
        assert_eq!(status, 200, "{body}");
        assert_eq!(served, der(&first.cert_pem));
        if body.contains("runner_memory_") {
            break body;
        }
        assert!(started.elapsed() < PATIENCE, "no sample yet: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.contains("host=\"tls-test\""), "{body}");
    // listen_auth is still asked for over TLS; health stays open.
    assert_eq!(get(&trusting_both, port, "/metrics", "").0, 401);
    assert_eq!(get(&trusting_both, port, "/-/healthy", "").0, 200);

    // Renewed on disk: the next connection gets the new certificate, no restart.
    install(dir.path(), &second, &second.key_pem, 10);
    let (status, _, served) = get(&trusting_both, port, "/metrics", AUTH);
    assert_eq!(status, 200);
    assert_eq!(served, der(&second.cert_pem), "the renewed certificate");

    // A renewal whose key is not the certificate's: the pair in use stays, said once.
    install(dir.path(), &first, &second.key_pem, 20);
    for _ in 0..3 {
        let (status, _, served) = get(&trusting_both, port, "/-/healthy", "");
        assert_eq!(status, 200);
        assert_eq!(served, der(&second.cert_pem), "the previous pair is kept");
    }
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
    // The child is gone: its stderr ends, and with it the reader's channel.
    let log = running
        .seen
        .iter()
        .cloned()
        .chain(running.lines.iter())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        log.matches("the changed certificate or key does not load")
            .count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("this key is not the one of the certificate"),
        "{log}"
    );
}

#[test]
fn plain_http_to_the_tls_port_gets_no_answer_and_the_port_goes_on() {
    let pki = pki("test CA");
    let (mut running, port, _dir, _file) = start(&pki);
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // A guard against a hang, not a budget: the server closes at once.
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    plain
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // Whatever came is a TLS alert record (content type 21), or nothing.
    assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
    let trusting = client(&[&pki.ca_pem]);
    assert_eq!(get(&trusting, port, "/-/healthy", "").0, 200);
    // A client that does not trust the CA is refused by its own check, as it should be.
    let stranger = client(&[&self::pki("other CA").ca_pem]);
    let connection =
        rustls::ClientConnection::new(stranger, ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut tls =
        rustls::StreamOwned::new(connection, TcpStream::connect(("127.0.0.1", port)).unwrap());
    assert!(
        tls.write_all(b"GET / HTTP/1.1\r\n\r\n")
            .and_then(|()| tls.flush())
            .is_err()
    );
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

#[test]
fn healthcheck_speaks_https_trusting_the_system_or_the_ca_file() {
    let pki = pki("test CA");
    let (mut running, port, dir, _file) = start(&pki);
    let ca = dir.path().join("tls/ca.crt");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let url = format!("https://localhost:{port}/-/healthy");
    let ok = command(&["healthcheck", "--ca-file", ca.to_str().unwrap(), &url])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("200 OK"));
    // The test CA is in no system store: without --ca-file the certificate is refused.
    let refused = command(&["healthcheck", &url]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let loopback = format!("https://127.0.0.1:{port}/-/healthy");
    let insecure = command(&["healthcheck", "--insecure", &loopback])
        .output()
        .unwrap();
    assert_eq!(
        insecure.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&insecure.stderr)
    );
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
}

#[test]
fn check_locates_a_pair_that_does_not_load() {
    let (a, b) = (pki("a"), pki("b"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    install(dir.path(), &a, &b.key_pem, 0);
    let file = dir.path().join("jobs.yaml");
    let parse = |yaml: &str| {
        runner::config::build::parse(&file, yaml, &|_| None).map(|c| c.listen_tls.clone())
    };
    let jobs = "jobs:\n  m: { type: monitor, schedule: \"@every 1s\", probes: [{ type: cpu }] }\n";
    let problems = parse(&format!(
        "data_dir: var\nlisten_tls:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n{jobs}"
    ))
    .expect_err("a key of another certificate")
    .render();
    assert!(
        problems.contains("jobs.yaml:4:13")
            && problems.contains("server.key: this key is not the one of the certificate"),
        "{problems}"
    );
    let problems = parse(&format!(
        "data_dir: var\nlisten_tls:\n  cert_file: tls/none.crt\n  key_file: tls/server.key\n{jobs}"
    ))
    .expect_err("no such file")
    .render();
    assert!(
        problems.contains("jobs.yaml:3:14") && problems.contains("cannot read"),
        "{problems}"
    );
    std::fs::write(dir.path().join("tls/junk.crt"), "not a certificate").unwrap();
    let problems = parse(&format!(
        "data_dir: var\nlisten_tls: {{ cert_file: tls/junk.crt, key_file: tls/server.key }}\n{jobs}"
    ))
    .expect_err("not PEM")
    .render();
    assert!(problems.contains("no PEM certificate"), "{problems}");
    let problems = parse(&format!(
        "data_dir: var\nlisten_tls: {{ cert_file: tls/server.crt, key: k }}\n{jobs}"
    ))
    .expect_err("unknown field")
    .render();
    assert!(problems.contains("key"), "{problems}");
    install(dir.path(), &a, &a.key_pem, 0);
    let loaded = parse(&format!(
        "data_dir: var\nlisten_tls: {{ cert_file: tls/server.crt, key_file: tls/server.key }}\n{jobs}"
    ))
    .unwrap_or_else(|p| panic!("{}", p.render()))
    .unwrap();
    assert_eq!(loaded.cert_file, dir.path().join("tls/server.crt"));
}
