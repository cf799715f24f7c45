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

/// A client for an API: `timeout` for a whole request, at most 10 s of it to connect.
pub fn client(timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    client_builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(10)))
        .build()
        .map_err(describe_error)
}

/// `a=1&b=x%20y`: an `application/x-www-form-urlencoded` body (OAuth token requests).
pub fn form_body(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// What an OAuth token endpoint answers.
#[derive(Debug, serde::Deserialize)]
pub struct TokenAnswer {
    pub access_token: String,
    /// Seconds the token lives.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// An OAuth access token kept until a minute before it expires.
#[derive(Debug, Default)]
pub struct TokenCache {
    slot: tokio::sync::Mutex<Option<(String, std::time::Instant)>>,
}

impl TokenCache {
    /// Renew this long before the token expires, so no request goes out with a dying one.
    const MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

    /// The kept token, or a new one from `fetch` (the token and its lifetime) when there is
    /// none, it is about to expire, or `force` says the far side refused it.
    pub async fn get<E>(
        &self,
        force: bool,
        fetch: impl std::future::Future<Output = Result<(String, std::time::Duration), E>>,
    ) -> Result<String, E> {
        let mut slot = self.slot.lock().await;
        if !force
            && let Some((token, renew_at)) = slot.as_ref()
            && std::time::Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = fetch.await?;
        *slot = Some((
            token.clone(),
            std::time::Instant::now() + lifetime.saturating_sub(Self::MARGIN),
        ));
        Ok(token)
    }
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

/// The parts of a URL that may be secret, for scrubbing text a destination sends back (an
/// Express 404 quotes the path: `Cannot POST /services/T0/B0/<token>`): the user and password,
/// the path and the query as a whole, and each path segment and query value of four characters
/// or more (shorter ones are words like `api`, not secrets).
pub fn url_secrets(url: &str) -> Vec<String> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return vec![url.to_string()];
    };
    let mut parts = vec![parsed.username().to_string()];
    parts.extend(parsed.password().map(str::to_string));
    let path = parsed.path();
    if path.len() > 1 {
        parts.push(path.to_string());
        parts.extend(path.split('/').map(str::to_string));
    }
    if let Some(query) = parsed.query() {
        parts.push(query.to_string());
        parts.extend(
            query
                .split('&')
                .filter_map(|pair| pair.split_once('=').map(|(_, v)| v.to_string())),
        );
    }
    parts.retain(|p| p.chars().count() >= 4);
    parts
}

/// What a notifier's answers are scrubbed of: its secrets, longest first, so a secret inside
/// another (a path segment inside the path) is scrubbed with it.
#[derive(Debug, Default, Clone)]
pub struct Secrets(Vec<String>);

impl Secrets {
    pub fn new(parts: impl IntoIterator<Item = String>) -> Secrets {
        let mut secrets: Vec<String> = parts.into_iter().filter(|s| !s.is_empty()).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Secrets(secrets)
    }

    /// `text` with every secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.0 {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }
}

/// The wait a `Retry-After` header asks for: seconds, or an HTTP date. Capped at an hour, so
/// a broken header cannot park a queue for days.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<std::time::Duration> {
    const CAP: std::time::Duration = std::time::Duration::from_secs(3600);
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| std::time::Duration::from_secs_f64(seconds).min(CAP));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or_default().min(CAP))
}

/// The start of a response body as one short line, for error messages.
pub fn snippet(body: &str) -> String {
    let line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_are_kept_until_near_expiry_or_refused() {
        let cache = TokenCache::default();
        let fetches = std::sync::atomic::AtomicU32::new(0);
        // Counted when awaited: a kept token never runs its fetch.
        let fetch = |lifetime: u64| {
            let fetches = &fetches;
            async move {
                let n = fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                Ok::<_, ()>((format!("t{n}"), std::time::Duration::from_secs(lifetime)))
            }
        };
        assert_eq!(cache.get(false, fetch(3600)).await, Ok("t1".into()));
        assert_eq!(cache.get(false, fetch(3600)).await, Ok("t1".into()), "kept");
        assert_eq!(
            cache.get(true, fetch(30)).await,
            Ok("t2".into()),
            "refused: renewed"
        );
        // A token that lives less than the margin is renewed at every use.
        assert_eq!(cache.get(false, fetch(3600)).await, Ok("t3".into()));
        assert_eq!(form_body(&[("a", "x y"), ("b", "&")]), "a=x+y&b=%26");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(
            retry_after(&headers),
            Some(std::time::Duration::from_secs(2))
        );
        headers.insert("retry-after", "999999".parse().unwrap());
        assert_eq!(
            retry_after(&headers),
            Some(std::time::Duration::from_secs(3600))
        );
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        headers.insert("retry-after", soon.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > std::time::Duration::from_secs(25) && wait <= std::time::Duration::from_secs(30),
            "{wait:?}"
        );
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(
            snippet("<html>\n  <body>asleep</body>\n</html>"),
            "<html> <body>asleep</body> </html>"
        );
        assert_eq!(snippet(&"x".repeat(300)).chars().count(), 201);
    }

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
