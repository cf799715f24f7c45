//! Credentials found where the AWS tools look for them, in their order: the environment
//! (`AWS_ACCESS_KEY_ID`, ...), the shared credentials and config files for the profile, a
//! web-identity token exchanged with STS (EKS, GitHub Actions), and on EC2 the instance
//! profile through IMDSv2 (a session token first, then the role's keys). Keys that expire are
//! kept until five minutes before they do.

use std::time::{Duration, SystemTime};

// The metadata service's address and timeout are those `host: auto` uses.
use crate::config::host::{IMDS_ENDPOINT as IMDS, IMDS_TIMEOUT};
use crate::config::probes::cloudwatch::CredentialEnv;

/// Keys to sign with.
#[derive(Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub expires: Option<SystemTime>,
}

impl std::fmt::Debug for Keys {
    // Never the secret or the token, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("access_key_id", &self.access_key_id)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Renew keys this long before they expire, as the SDKs do.
const MARGIN: Duration = Duration::from_secs(300);

/// Finds keys and keeps them while they are good.
#[derive(Debug)]
pub struct Provider {
    env: CredentialEnv,
    region: String,
    kept: Option<Keys>,
}

impl Provider {
    pub fn new(env: CredentialEnv, region: &str) -> Self {
        Provider {
            env,
            region: region.to_string(),
            kept: None,
        }
    }

    /// Forgets the kept keys: CloudWatch said they expired or were refused.
    pub fn forget(&mut self) {
        self.kept = None;
    }

    pub async fn keys(&mut self, now: SystemTime) -> Result<Keys, String> {
        if let Some(keys) = &self.kept
            && keys.expires.is_none_or(|at| now + MARGIN < at)
        {
            return Ok(keys.clone());
        }
        let keys = self.find().await?;
        self.kept = Some(keys.clone());
        Ok(keys)
    }

    async fn find(&self) -> Result<Keys, String> {
        let env = &self.env;
        if let (Some(id), Some(secret)) = (&env.access_key_id, &env.secret_access_key) {
            return Ok(Keys {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: env.session_token.clone(),
                expires: None,
            });
        }
        if let Some(keys) = self.in_files()? {
            return Ok(keys);
        }
        if let (Some(token_file), Some(role)) = (&env.web_identity_token_file, &env.role_arn) {
            return self.web_identity(token_file, role).await;
        }
        if env.imds_disabled {
            return Err(NONE_FOUND.to_string());
        }
        let endpoint = env.imds_endpoint.as_deref().unwrap_or(IMDS);
        instance_profile(endpoint).await.map_err(|e| {
            if env.imds_endpoint.is_none() && e.contains("no answer") {
                NONE_FOUND.to_string()
            } else {
                e
            }
        })
    }

    fn profile(&self) -> &str {
        self.env.profile.as_deref().unwrap_or("default")
    }

    /// The profile's keys in the shared credentials file, else in the config file.
    fn in_files(&self) -> Result<Option<Keys>, String> {
        let home = self.env.home.as_deref().unwrap_or("~");
        let profile = self.profile();
        let files = [
            (
                self.env
                    .shared_credentials_file
                    .clone()
                    .unwrap_or_else(|| format!("{home}/.aws/credentials")),
                profile.to_string(),
            ),
            (
                self.env
                    .config_file
                    .clone()
                    .unwrap_or_else(|| format!("{home}/.aws/config")),
                // The config file names every profile but the default `profile <name>`.
                if profile == "default" {
                    "default".to_string()
                } else {
                    format!("profile {profile}")
                },
            ),
        ];
        for (path, section) in files {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("cannot read `{path}`: {e}")),
            };
            let values = ini_section(&text, &section);
            match (
                values.iter().find(|(k, _)| k == "aws_access_key_id"),
                values.iter().find(|(k, _)| k == "aws_secret_access_key"),
            ) {
                (Some((_, id)), Some((_, secret))) => {
                    return Ok(Some(Keys {
                        access_key_id: id.clone(),
                        secret_access_key: secret.clone(),
                        session_token: values
                            .iter()
                            .find(|(k, _)| k == "aws_session_token")
                            .map(|(_, v)| v.clone()),
                        expires: None,
                    }));
                }
                (Some(_), None) | (None, Some(_)) => {
                    return Err(format!(
                        "profile `{profile}` in `{path}` has only half a key pair (aws_access_key_id and aws_secret_access_key)"
                    ));
                }
                (None, None) => {}
            }
        }
        if self.env.profile.is_some() && self.env.web_identity_token_file.is_none() {
            return Err(format!(
                "profile `{profile}` has no aws_access_key_id and aws_secret_access_key in the shared credentials or config file"
            ));
        }
        Ok(None)
    }

    /// Exchanges the web-identity token (read anew each time: it is rotated) for a role's keys.
    async fn web_identity(&self, token_file: &str, role: &str) -> Result<Keys, String> {
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| format!("cannot read the web identity token `{token_file}`: {e}"))?;
        let endpoint = self
            .env
            .sts_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://sts.{}.amazonaws.com", self.region));
        let session = self
            .env
            .role_session_name
            .clone()
            .unwrap_or_else(|| "runner".to_string());
        let body = crate::http::form_body(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role),
            ("RoleSessionName", &session),
            ("WebIdentityToken", token.trim()),
        ]);
        let client = crate::http::client(Duration::from_secs(10))?;
        let answer = client
            .post(format!("{}/", endpoint.trim_end_matches('/')))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("STS at {endpoint}: {}", crate::http::describe_error(e)))?;
        let status = answer.status();
        let text = answer
            .text()
            .await
            .map_err(|e| format!("STS at {endpoint}: {}", crate::http::describe_error(e)))?;
        if !status.is_success() {
            let message = xml_tag(&text, "Message").unwrap_or_else(|| status.to_string());
            return Err(format!(
                "STS refused the web identity token for `{role}`: {message}"
            ));
        }
        let tag =
            |name: &str| xml_tag(&text, name).ok_or_else(|| format!("STS answered without {name}"));
        Ok(Keys {
            access_key_id: tag("AccessKeyId")?,
            secret_access_key: tag("SecretAccessKey")?,
            session_token: Some(tag("SessionToken")?),
            expires: xml_tag(&text, "Expiration").and_then(|t| parse_time(&t)),
        })
    }
}

const NONE_FOUND: &str = "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, give a profile in ~/.aws/credentials, set AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, or run on EC2 with an instance profile";

/// The instance profile's keys from IMDSv2: a session token, the role's name, its keys.
async fn instance_profile(endpoint: &str) -> Result<Keys, String> {
    let imds = Imds::open(endpoint).await?;
    let roles = imds
        .get("/latest/meta-data/iam/security-credentials/")
        .await?;
    let role = roles
        .lines()
        .next()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or("this EC2 instance has no instance profile (no IAM role)")?;
    let text = imds
        .get(&format!(
            "/latest/meta-data/iam/security-credentials/{role}"
        ))
        .await?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct RoleKeys {
        access_key_id: String,
        secret_access_key: String,
        token: String,
        expiration: Option<String>,
    }
    let keys: RoleKeys = serde_json::from_str(&text)
        .map_err(|e| format!("the instance metadata service answered no keys for `{role}`: {e}"))?;
    Ok(Keys {
        access_key_id: keys.access_key_id,
        secret_access_key: keys.secret_access_key,
        session_token: Some(keys.token),
        expires: keys.expiration.as_deref().and_then(parse_time),
    })
}

/// A session with the instance metadata service (IMDSv2: a PUT for a token first).
pub struct Imds {
    client: reqwest::Client,
    endpoint: String,
    token: String,
}

impl Imds {
    pub async fn open(endpoint: &str) -> Result<Imds, String> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let client = crate::http::client_builder()
            .timeout(IMDS_TIMEOUT)
            .connect_timeout(IMDS_TIMEOUT)
            // The metadata service is link-local: a proxy must never see the request.
            .no_proxy()
            .build()
            .map_err(crate::http::describe_error)?;
        let answer = client
            .put(format!("{endpoint}/latest/api/token"))
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            .send()
            .await
            .map_err(|e| {
                format!(
                    "no answer from the instance metadata service at {endpoint}: {}",
                    crate::http::describe_error(e)
                )
            })?;
        if !answer.status().is_success() {
            return Err(format!(
                "the instance metadata service at {endpoint} gave no session token: {}",
                answer.status()
            ));
        }
        let token = answer.text().await.map_err(crate::http::describe_error)?;
        Ok(Imds {
            client,
            endpoint,
            token,
        })
    }

    pub async fn get(&self, path: &str) -> Result<String, String> {
        let answer = self
            .client
            .get(format!("{}{path}", self.endpoint))
            .header("x-aws-ec2-metadata-token", &self.token)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "no answer from the instance metadata service at {}: {}",
                    self.endpoint,
                    crate::http::describe_error(e)
                )
            })?;
        if !answer.status().is_success() {
            return Err(format!(
                "the instance metadata service answered {} for {path}",
                answer.status()
            ));
        }
        answer.text().await.map_err(crate::http::describe_error)
    }
}

/// `key = value` lines of one `[section]` of an INI file as the AWS tools write them.
fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    out
}

/// The text of the first `<name>` element: STS answers a few flat fields in XML.
fn xml_tag(text: &str, name: &str) -> Option<String> {
    let start = text.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + text[start..].find(&format!("</{name}>"))?;
    Some(
        text[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

fn parse_time(text: &str) -> Option<SystemTime> {
    let t = chrono::DateTime::parse_from_rfc3339(text.trim()).ok()?;
    let secs = u64::try_from(t.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_read_from_its_section_only() {
        let text = "[default]\naws_access_key_id = A\n[profile prod]\n# note\naws_access_key_id=B\naws_secret_access_key = S=x\n";
        assert_eq!(
            ini_section(text, "default"),
            [("aws_access_key_id".to_string(), "A".to_string())]
        );
        assert_eq!(ini_section(text, "profile prod")[1].1, "S=x");
    }

    #[test]
    fn sts_fields_are_read_from_its_xml() {
        let xml = "<AssumeRoleWithWebIdentityResponse><Credentials><AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>s&amp;k</SecretAccessKey><Expiration>2026-12-07T06:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResponse>";
        assert_eq!(xml_tag(xml, "AccessKeyId").as_deref(), Some("ASIA1"));
        assert_eq!(xml_tag(xml, "SecretAccessKey").as_deref(), Some("s&k"));
        assert!(parse_time(&xml_tag(xml, "Expiration").unwrap()).is_some());
    }
}
