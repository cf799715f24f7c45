//! Outbound HTTP for every part of runner (probes, notifiers, ServiceNow, uploads): one place
//! that sets the TLS provider, the user agent and the rules every client follows.

use std::sync::Once;

/// `runner/<version>`, so the far side's logs say who called.
pub const USER_AGENT: &str = concat!("runner/", env!("CARGO_PKG_VERSION"));

/// A client builder with rustls (ring) ready: no client has a default timeout, so every
/// caller sets its own.
pub fn client_builder() -> reqwest::ClientBuilder {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Fails only if another provider was installed first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .tls_backend_rustls()
        .user_agent(USER_AGENT)
}

/// reqwest's error with the URL removed (URLs can carry secrets) and its causes joined, since
/// its own `Display` stops at "error sending request".
pub fn describe_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    if error.is_timeout() {
        // The causes only say the same again ("operation timed out").
        return "timed out".to_string();
    }
    let mut message = if error.is_connect() {
        "cannot connect".to_string()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// `https://hooks.slack.com` of a URL: what may be shown of it.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", parsed.scheme()),
            (Some(host), None) => format!("{}://{host}", parsed.scheme()),
            _ => format!("{}://", parsed.scheme()),
        },
        Err(_) => "(an unparsable URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_to_scheme_and_host() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:8080/x?token=y"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(redact_url("not a url"), "(an unparsable URL)");
    }
}
