//! The servicenow_fetch job: pull the incidents of the job's query from the Table API into the
//! incidents cache, page by page to the end, and incrementally after the first run.
//!
//! Pages are keyset pages, ordered by `sys_updated_on` then `sys_id`, each asking for the rows
//! after the last one seen. Offsets would skip a row whenever another row changes between two
//! page requests (the changed row moves to the end, everything after it shifts left); keyset
//! pages never skip, and a changed row simply comes again and replaces its older copy. After a
//! completed fetch the watermark is the newest `sys_updated_on` seen; the next run asks for rows
//! updated at or after it.
//!
//! A server cannot make a run endless or unbounded in memory: a page's answer is read up to a
//! byte cap ([`page_body_limit`]), must hold at most `page_size` rows and must move the keyset
//! forward (a server that ignores the keyset condition repeats a page: the run stops at once);
//! a run keeps at most [`MAX_ROWS_PER_RUN`] rows and [`MAX_TEXT_PER_RUN`] bytes of text, then
//! stops with the watermark at the last row kept, so the next run goes on from there and
//! nothing is lost; and each text field is cut to [`FIELD_MAX`](super::cache::FIELD_MAX).

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tracing::{info, warn};

use super::cache::{Cache, DEFAULT_FIELDS, Incident, REQUIRED_FIELDS, SCHEMA_VERSION, cache_path};
use super::client::{BodyLimit, human_bytes};
use super::{Client, Error};
use crate::config::FetchSpec;
use crate::http::redact_url;
use crate::scheduler::clock::SharedClock;
use crate::vocab::Backoff;

/// Attempts of one page before the run gives up (it continues from the same place next time).
const MAX_ATTEMPTS: u32 = 6;

/// Rows one run keeps at most. A first fetch of a large query catches up over a few runs
/// (the watermark moves to the last row kept); a server that makes up new rows for ever is
/// stopped here. At the default `page_size` of 100 this is 1,000 requests.
pub const MAX_ROWS_PER_RUN: usize = 100_000;

/// Bytes of incident text one run keeps at most (after each field is cut), whichever of this
/// and [`MAX_ROWS_PER_RUN`] comes first: 100,000 rows of the default fields are about 40 MB,
/// rows with a few 4 KiB fields reach this sooner and simply take more runs.
pub const MAX_TEXT_PER_RUN: usize = 64 << 20;

/// Bytes of a page's answer allowed for each row asked for: a row of the default fields is
/// under 1 KiB of JSON, one with a full `description` about 5 KiB.
pub const PAGE_BYTES_PER_ROW: usize = 16 << 10;
/// The page byte cap is never smaller than this (small pages, long fields)...
pub const MIN_PAGE_BYTES: usize = 1 << 20;
/// ...nor larger than this, which bounds what one page costs to parse: 10,000 rows (the
/// largest `page_size`) of up to 3.3 KB each still fit.
pub const MAX_PAGE_BYTES: usize = 32 << 20;
// A page of the largest `page_size` (10,000, checked in config) must leave each row at least
// 3 KB, several times a row of the default fields.
const _: () = assert!(MAX_PAGE_BYTES / 10_000 >= 3_000);

/// The most bytes a page of `page_size` rows may take.
pub fn page_body_limit(page_size: u32) -> usize {
    (page_size as usize)
        .saturating_mul(PAGE_BYTES_PER_ROW)
        .clamp(MIN_PAGE_BYTES, MAX_PAGE_BYTES)
}

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Everything the query matches.
    All,
    /// Rows updated at or after this `sys_updated_on` (the watermark of the last run).
    Since(String),
    /// Rows after this one in (`sys_updated_on`, `sys_id`) order.
    After { updated: String, sys_id: String },
}

impl Start {
    /// Whether a page whose last row is (`updated`, `sys_id`) got past this start: a server
    /// that honours the keyset condition only ever answers rows after it.
    fn passed_by(&self, updated: &str, sys_id: &str) -> bool {
        match self {
            Start::All => true,
            Start::Since(t) => updated >= t.as_str(),
            Start::After {
                updated: u,
                sys_id: s,
            } => (updated, sys_id) > (u.as_str(), s.as_str()),
        }
    }
}

/// The encoded query of one page: the job's query (its own `ORDERBY` parts dropped), the start
/// condition added to each of its `^NQ` groups, then the order.
pub fn page_query(base: &str, from: &Start) -> String {
    let groups: Vec<String> = base
        .split("^NQ")
        .map(|group| {
            group
                .split('^')
                .filter(|part| !part.is_empty() && !part.starts_with("ORDERBY"))
                .collect::<Vec<_>>()
                .join("^")
        })
        .collect();
    let with = |group: &str, condition: String| {
        if group.is_empty() {
            condition
        } else {
            format!("{group}^{condition}")
        }
    };
    let mut alternatives = Vec::new();
    for group in &groups {
        match from {
            Start::All => {
                if !group.is_empty() {
                    alternatives.push(group.clone());
                }
            }
            Start::Since(t) => alternatives.push(with(group, format!("sys_updated_on>={t}"))),
            Start::After { updated, sys_id } => {
                alternatives.push(with(group, format!("sys_updated_on>{updated}")));
                alternatives.push(with(
                    group,
                    format!("sys_updated_on={updated}^sys_id>{sys_id}"),
                ));
            }
        }
    }
    let order = "ORDERBYsys_updated_on^ORDERBYsys_id";
    if alternatives.is_empty() {
        order.to_string()
    } else {
        format!("{}^{order}", alternatives.join("^NQ"))
    }
}

/// What a fetch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub pages: usize,
    pub rows: usize,
    pub new: usize,
    pub updated: usize,
    pub retries: u32,
    pub incremental: bool,
    /// Incidents in the cache afterwards.
    pub cached: usize,
    /// Why the run stopped before the end (a per-run cap), and where the next one goes on.
    pub stopped: Option<String>,
}

impl Fetched {
    pub fn line(&self) -> String {
        format!(
            "{} {} rows in {} pages: {} new, {} updated, {} cached{}{}",
            if self.incremental {
                "incremental fetch:"
            } else {
                "full fetch:"
            },
            self.rows,
            self.pages,
            self.new,
            self.updated,
            self.cached,
            if self.retries > 0 {
                format!(" ({} retries)", self.retries)
            } else {
                String::new()
            },
            match &self.stopped {
                Some(why) => format!("; {why}"),
                None => String::new(),
            }
        )
    }
}

/// A fetch of one job's incidents into `cache`.
pub struct Fetch<'a> {
    pub client: &'a Client,
    pub spec: &'a FetchSpec,
    pub clock: SharedClock,
}

impl Fetch<'_> {
    fn field_list(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = match &self.spec.fields {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => DEFAULT_FIELDS.to_vec(),
        };
        for required in REQUIRED_FIELDS {
            if !fields.contains(required) {
                fields.push(required);
            }
        }
        fields
    }

    fn fields(&self) -> String {
        self.field_list().join(",")
    }

    /// One page, with retries: 429 waits `Retry-After`, 5xx, timeouts and HTML pages back off.
    async fn page(&self, query: &str, fetched: &mut Fetched) -> Result<(Vec<Value>, bool), String> {
        let limit_bytes = BodyLimit {
            bytes: page_body_limit(self.spec.page_size),
            advice: "lower the job's `page_size` or ask for fewer `fields` (or check that the instance honours `sysparm_limit`)",
        };
        let limit = self.spec.page_size.to_string();
        let fields = self.fields();
        let url = self.client.table_url(
            "incident",
            None,
            &[
                ("sysparm_query", query),
                ("sysparm_fields", &fields),
                ("sysparm_limit", &limit),
                ("sysparm_display_value", "false"),
                ("sysparm_exclude_reference_link", "true"),
                ("sysparm_no_count", "false"),
            ],
        );
        let (initial, max) = self
            .spec
            .delivery
            .as_ref()
            .map(|d| (d.retry_initial, d.retry_max))
            .unwrap_or((Duration::from_secs(1), Duration::from_secs(60)));
        let mut backoff = Backoff::new(initial, max);
        loop {
            match self
                .client
                .call_limited(Method::GET, url.clone(), None, limit_bytes)
                .await
            {
                Ok(answer) => {
                    // Taken out of the answer, not copied: a page is held once.
                    let rows = match answer.json {
                        Value::Object(mut map) => match map.remove("result") {
                            Some(Value::Array(rows)) => Some(rows),
                            _ => None,
                        },
                        _ => None,
                    }
                    .ok_or_else(|| "the answer has no `result` list".to_string())?;
                    // The Link header says whether more rows follow; without one, a full
                    // page means there may be more.
                    let links: Vec<&str> = answer
                        .headers
                        .get_all(reqwest::header::LINK)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect();
                    let more = if links.is_empty() {
                        rows.len() >= self.spec.page_size as usize
                    } else {
                        links.iter().any(|v| v.contains("rel=\"next\""))
                    };
                    fetched.pages += 1;
                    return Ok((rows, more));
                }
                Err(Error::Transient {
                    message,
                    retry_after,
                }) if backoff.failures() + 1 < MAX_ATTEMPTS => {
                    let wait = retry_after.unwrap_or_else(|| backoff.next_wait());
                    if retry_after.is_some() {
                        backoff.next_wait();
                    }
                    fetched.retries += 1;
                    warn!(instance = %redact_url(self.client.base_url()), retry_in_ms = wait.as_millis() as u64, "incident fetch: {message}; retrying");
                    self.clock.sleep(wait).await;
                }
                Err(Error::Transient { message, .. }) => {
                    return Err(format!("{message} (gave up after {MAX_ATTEMPTS} attempts)"));
                }
                Err(Error::Permanent { message, .. }) => return Err(message),
            }
        }
    }

    /// Fetches into `cache` (which may be the one on disk, or a copy for a dry run). On an error
    /// the rows fetched so far stay in `cache` and the watermark does not move, so the next run
    /// asks again from the same place.
    pub async fn run(&self, cache: &mut Cache) -> Result<Fetched, (Fetched, String)> {
        let base = self.spec.query.clone().unwrap_or_default();
        let instance = redact_url(self.client.base_url());
        if cache.query != base
            || cache.instance != instance
            || cache.schema_version != SCHEMA_VERSION
        {
            *cache = Cache {
                schema_version: SCHEMA_VERSION,
                instance: instance.clone(),
                query: base.clone(),
                ..Cache::default()
            };
        }
        let mut fetched = Fetched {
            incremental: cache.watermark.is_some(),
            ..Fetched::default()
        };
        let mut from = match &cache.watermark {
            Some(t) => Start::Since(t.clone()),
            None => Start::All,
        };
        let mut newest: Option<String> = cache.watermark.clone();
        let page_size = self.spec.page_size as usize;
        let requested = self.field_list();
        let mut text = 0usize;
        let fail = |mut fetched: Fetched, cache: &Cache, message: String| {
            fetched.cached = cache.incidents.len();
            Err((fetched, format!("ServiceNow {instance}: {message}")))
        };
        loop {
            let query = page_query(&base, &from);
            let (rows, more) = match self.page(&query, &mut fetched).await {
                Ok(page) => page,
                Err(message) => return fail(fetched, cache, message),
            };
            if rows.len() > page_size {
                let message = format!(
                    "page {} has {} rows, more than the {page_size} asked for (`sysparm_limit`); the instance (or a proxy in front of it) ignores the limit, so nothing of this page was kept; the rows of earlier pages are kept and the next run asks again from the same place",
                    fetched.pages,
                    rows.len()
                );
                return fail(fetched, cache, message);
            }
            // Only the fields asked for: extra keys a server adds are not kept.
            let incidents: Vec<Incident> = rows
                .into_iter()
                .filter_map(|row| match row {
                    Value::Object(mut row) => {
                        row.retain(|key, _| requested.contains(&key.as_str()));
                        Incident::from_row(&row)
                    }
                    _ => None,
                })
                .collect();
            if let Some(end) = incidents.last()
                && !from.passed_by(&end.sys_updated_on, &end.sys_id)
            {
                let message = format!(
                    "page {} repeats rows already fetched: it ends at {} (sys_updated_on {}), not after where it was asked to start; the instance ignores the keyset condition in `sysparm_query`, so paging would never end; stopped after {} pages (check the job's `query` and any business rule or proxy that rewrites queries)",
                    fetched.pages, end.number, end.sys_updated_on, fetched.pages
                );
                return fail(fetched, cache, message);
            }
            let at_cap =
                |rows: usize, text: usize| rows >= MAX_ROWS_PER_RUN || text >= MAX_TEXT_PER_RUN;
            let mut last: Option<(String, String)> = None;
            let mut capped = false;
            for incident in incidents {
                if at_cap(fetched.rows, text) {
                    capped = true;
                    break;
                }
                text += incident.text_bytes();
                fetched.rows += 1;
                last = Some((incident.sys_updated_on.clone(), incident.sys_id.clone()));
                if newest
                    .as_deref()
                    .is_none_or(|n| incident.sys_updated_on.as_str() > n)
                {
                    newest = Some(incident.sys_updated_on.clone());
                }
                if cache.upsert(incident) {
                    fetched.new += 1;
                } else {
                    fetched.updated += 1;
                }
            }
            // A page that ended exactly at a cap with more to come stops too.
            if capped || (more && at_cap(fetched.rows, text)) {
                // Rows come in keyset order, so every row up to the last one kept is in; the
                // next run asks from that row's second on (at or after, as after a complete
                // run), so nothing is lost.
                let resume = match (last, from) {
                    (Some((updated, _)), _)
                    | (None, Start::After { updated, .. } | Start::Since(updated)) => Some(updated),
                    (None, Start::All) => None,
                };
                let why = if fetched.rows >= MAX_ROWS_PER_RUN {
                    format!("{MAX_ROWS_PER_RUN} rows")
                } else {
                    format!("{} of text", human_bytes(MAX_TEXT_PER_RUN))
                };
                let stopped = format!(
                    "stopped at {why}, the most one run keeps; the next run goes on from {}",
                    resume.as_deref().unwrap_or("the start")
                );
                warn!(instance = %instance, rows = fetched.rows, "incident fetch: {stopped}");
                fetched.stopped = Some(stopped);
                newest = resume.or(newest);
                break;
            }
            match last {
                Some((updated, sys_id)) if more => {
                    from = Start::After { updated, sys_id };
                }
                _ => break,
            }
        }
        cache.watermark = newest;
        cache.fetched_at = Some(self.clock.now());
        fetched.cached = cache.incidents.len();
        Ok(fetched)
    }
}

/// Runs the job: fetch, then write the cache (also after a failed fetch, so rows fetched so far
/// are kept). Returns the summary line.
pub async fn run_job(
    job: &str,
    spec: &FetchSpec,
    data_dir: &std::path::Path,
    clock: SharedClock,
) -> anyhow::Result<String> {
    let Some(settings) = &spec.servicenow else {
        let line = format!(
            "ServiceNow is not configured (notifier `{}` is off); nothing fetched",
            spec.from
        );
        info!(job, "{line}");
        return Ok(line);
    };
    let client = Client::new(settings).map_err(anyhow::Error::msg)?;
    let path = cache_path(data_dir);
    let mut cache = match Cache::read(&path) {
        Ok(cache) => cache.unwrap_or_default(),
        Err(e) => {
            let aside = path.with_extension("json.corrupt");
            let _ = std::fs::rename(&path, &aside);
            warn!(job, file = %aside.display(), "incidents cache unreadable ({e}); kept aside, fetching everything again");
            Cache::default()
        }
    };
    let result = Fetch {
        client: &client,
        spec,
        clock,
    }
    .run(&mut cache)
    .await;
    match result {
        Ok(fetched) => {
            cache.write(&path)?;
            info!(
                job,
                pages = fetched.pages,
                rows = fetched.rows,
                new = fetched.new,
                updated = fetched.updated,
                cached = fetched.cached,
                "incidents: {}",
                fetched.line()
            );
            Ok(fetched.line())
        }
        Err((fetched, e)) => {
            // Keep what came before the failure; the watermark did not move.
            if fetched.rows > 0 {
                cache.write(&path)?;
            }
            anyhow::bail!("{e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_of_the_largest_size_fits_its_byte_cap_and_pages_must_move_forward() {
        assert_eq!(page_body_limit(1), MIN_PAGE_BYTES);
        assert_eq!(page_body_limit(100), 100 * PAGE_BYTES_PER_ROW);
        assert_eq!(page_body_limit(10_000), MAX_PAGE_BYTES);
        let at = Start::After {
            updated: "2026-11-20 10:00:00".into(),
            sys_id: "b".into(),
        };
        assert!(at.passed_by("2026-11-20 10:00:00", "c"));
        assert!(at.passed_by("2026-11-20 10:00:01", "a"));
        assert!(
            !at.passed_by("2026-11-20 10:00:00", "b"),
            "the same row again"
        );
        assert!(!at.passed_by("2026-11-20 09:59:59", "z"));
        let since = Start::Since("2026-11-20 10:00:00".into());
        assert!(since.passed_by("2026-11-20 10:00:00", "a"));
        assert!(!since.passed_by("2026-11-20 09:00:00", "a"));
        assert!(Start::All.passed_by("", ""));
    }

    #[test]
    fn page_queries_keep_the_users_query_and_add_the_keyset() {
        assert_eq!(
            page_query("", &Start::All),
            "ORDERBYsys_updated_on^ORDERBYsys_id"
        );
        assert_eq!(
            page_query("category=performance^ORDERBYnumber", &Start::All),
            "category=performance^ORDERBYsys_updated_on^ORDERBYsys_id"
        );
        assert_eq!(
            page_query(
                "category=performance",
                &Start::Since("2026-11-20 10:00:00".into())
            ),
            "category=performance^sys_updated_on>=2026-11-20 10:00:00^ORDERBYsys_updated_on^ORDERBYsys_id"
        );
        assert_eq!(
            page_query(
                "priority=1^NQcategory=performance",
                &Start::After {
                    updated: "2026-11-20 10:00:00".into(),
                    sys_id: "abc".into()
                }
            ),
            "priority=1^sys_updated_on>2026-11-20 10:00:00^NQpriority=1^sys_updated_on=2026-11-20 10:00:00^sys_id>abc^NQcategory=performance^sys_updated_on>2026-11-20 10:00:00^NQcategory=performance^sys_updated_on=2026-11-20 10:00:00^sys_id>abc^ORDERBYsys_updated_on^ORDERBYsys_id"
        );
    }
}
