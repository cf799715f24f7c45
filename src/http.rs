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

/// A configured endpoint made ready: its client (timeout, extra CA certificates), its URL,
/// the headers every request carries (auth included), and what its answers are scrubbed of.
#[derive(Debug)]
pub struct EndpointClient {
    pub client: reqwest::Client,
    pub url: reqwest::Url,
    pub headers: reqwest::header::HeaderMap,
    pub secrets: Secrets,
    /// What may be shown of the URL.
    pub shown: String,
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
/// Express 404 quotes the path: `Cannot POST /services/T0/B0/<token>`): the user and password
/// (as written and decoded, and the `Authorization: Basic` reqwest builds of them), the path
/// and the query as a whole, and each path segment and query value of four characters or more
/// (shorter ones are words like `api`, not secrets).
pub fn url_secrets(url: &str) -> Vec<String> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return vec![url.to_string()];
    };
    let mut parts = url_credentials(&parsed);
    let path = parsed.path();
    if path.len() > 1 {
        parts.push(path.to_string());
        parts.extend(path.split('/').map(str::to_string));
    }
    parts.extend(query_secrets(&parsed));
    parts.retain(|p| p.chars().count() >= 4);
    parts
}

/// A URL's user and password, as written and percent-decoded, and the base64 forms of the
/// `Authorization: Basic` header reqwest sends for them (it decodes them first).
pub fn url_credentials(url: &reqwest::Url) -> Vec<String> {
    let decode = percent_decode;
    let (user, password) = (url.username(), url.password());
    let mut parts = vec![user.to_string(), decode(user)];
    if let Some(password) = password {
        parts.push(password.to_string());
        parts.push(decode(password));
    }
    if !user.is_empty() || password.is_some() {
        parts.extend(basic_auth_forms(
            &decode(user),
            &decode(password.unwrap_or_default()),
        ));
    }
    parts.retain(|p| p.chars().count() >= 4);
    parts
}

/// A URL's query as a whole and each of its values, as written and decoded: tokens often
/// travel there (`?token=`).
pub fn query_secrets(url: &reqwest::Url) -> Vec<String> {
    let Some(query) = url.query() else {
        return Vec::new();
    };
    let mut parts = vec![query.to_string()];
    for pair in query.split('&') {
        if let Some((_, value)) = pair.split_once('=') {
            parts.push(value.to_string());
        }
    }
    parts.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
    parts.retain(|p| p.chars().count() >= 4);
    parts
}

/// `%41` → `A`, leaving malformed escapes as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every base64 form of `user:password`, the credential pair an `Authorization: Basic` header
/// carries: standard and URL-safe alphabets, padded and not. A destination that echoes the
/// header shows one of these, never the password itself.
pub fn basic_auth_forms(user: &str, password: &str) -> Vec<String> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let pair = format!("{user}:{password}");
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .map(|engine| engine.encode(pair.as_bytes()))
        .collect()
}

/// Every form `secret` may be sent (and so echoed) in: as it is; percent-encoded as a form body
/// writes it (`+` for a space) and as a URL component does (`%20`), in upper and lower case
/// hex; and escaped inside a JSON string (with `/` as `\/` too, as PHP writes it).
pub fn secret_forms(secret: &str) -> Vec<String> {
    let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let component = form.replace('+', "%20");
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or(&json)
        .to_string();
    let mut forms = vec![
        secret.to_string(),
        lower_hex(&form),
        lower_hex(&component),
        json.replace('/', "\\/"),
        form,
        component,
        json,
    ];
    forms.sort();
    forms.dedup();
    forms
}

/// `%2F` → `%2f`: some servers write escapes in lower case.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut left = 0;
    for c in encoded.chars() {
        if c == '%' {
            left = 2;
            out.push(c);
        } else if left > 0 {
            left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// What a notifier's answers are scrubbed of: every form of each of its secrets (see
/// `secret_forms`), longest first, so a secret inside another (a path segment inside the path)
/// is scrubbed with it.
#[derive(Debug, Default, Clone)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// Shortest part of a secret form scrubbed where a text was cut (`…`): shorter ones are
    /// too likely to be ordinary words.
    const MIN_CUT: usize = 4;

    pub fn new(parts: impl IntoIterator<Item = String>) -> Secrets {
        let mut secrets: Vec<String> = parts
            .into_iter()
            .filter(|s| !s.is_empty())
            .flat_map(|s| secret_forms(&s))
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Secrets(secrets)
    }

    /// `text` with every form of every secret replaced by `***`; where the text was cut short
    /// (`snippet` ends it in `…`), a secret's beginning just before the cut is scrubbed too.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.0 {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        if let Some(kept) = text.strip_suffix('…') {
            for secret in &self.0 {
                let cut = (Self::MIN_CUT..secret.len())
                    .rev()
                    .filter(|&n| secret.is_char_boundary(n))
                    .find(|&n| kept.ends_with(&secret[..n]));
                if let Some(n) = cut {
                    return format!("{}***…", &kept[..kept.len() - n]);
                }
            }
        }
        text
    }
}

/// A header as reqwest would send it, checked now: a name that is not a token (`Bad Header`)
/// or a value with a line break (from an environment variable) would fail every request at
/// run time. The value is never quoted: it may be a secret.
pub fn header(
    name: &str,
    value: &str,
) -> Result<(reqwest::header::HeaderName, reqwest::header::HeaderValue), String> {
    let parsed = reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("header name `{name}` is not a valid HTTP header name"))?;
    let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        format!("the value of header `{name}` is not a valid HTTP header value (a line break or control character?)")
    })?;
    Ok((parsed, value))
}

/// A URL reqwest can send to, checked now; the URL itself is never quoted (it may hold a
/// token).
pub fn request_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("{} is not a URL reqwest can send to: {e}", redact_url(url)))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "{} is not an http:// or https:// URL with a host",
            redact_url(url)
        ));
    }
    Ok(parsed)
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
    fn every_form_a_secret_is_sent_in_is_scrubbed() {
        use base64::Engine;
        let secrets = Secrets::new(["p@ss w/rd+1".to_string(), "1//0gRefresh".to_string()]);
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:p@ss w/rd+1");
        let url = reqwest::Url::parse("http://alice:p%40ss%20w%2Frd+1@h/x?token=tok%2Fen").unwrap();
        let secrets_url =
            Secrets::new(url_credentials(&url).into_iter().chain(query_secrets(&url)));
        for (secrets, text) in [
            (&secrets, "p@ss w/rd+1".to_string()),
            (&secrets, "client_secret=p%40ss+w%2Frd%2B1".to_string()),
            (&secrets, "p%40ss%20w%2Frd%2B1".to_string()),
            (&secrets, "p%40ss%20w%2frd%2b1".to_string()),
            (&secrets, r#"{"s":"p@ss w\/rd+1"}"#.to_string()),
            (&secrets, "refresh_token=1%2F%2F0gRefresh".to_string()),
            (&secrets_url, format!("Basic {basic}")),
            (
                &secrets_url,
                format!("Basic {}", basic.trim_end_matches('=')),
            ),
            (&secrets_url, "GET /x?token=tok%2Fen".to_string()),
            (&secrets_url, "token tok/en".to_string()),
            (&secrets_url, "user p%40ss%20w%2Frd+1".to_string()),
        ] {
            let scrubbed = secrets.scrub(&text);
            assert!(scrubbed.contains("***"), "{text} → {scrubbed}");
            for leak in [
                "p@ss",
                "ss w",
                "p%40",
                "0gRefresh",
                "tok/en",
                "tok%2F",
                &basic[..8],
            ] {
                assert!(!scrubbed.contains(leak), "{leak} in {scrubbed}");
            }
        }
        // A secret cut by `snippet` leaves no beginning behind.
        assert_eq!(secrets.scrub("said 1//0gRef…"), "said ***…");
        assert_eq!(secrets.scrub("ends …"), "ends …");
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
