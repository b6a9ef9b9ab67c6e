//! Feeds a tenant follows: polled on their interval (backing off after
//! failures), each new entry added once as a source (its key is the feed
//! and the entry id), fetched with a timeout, a size cap and a redirect
//! limit, and only from public addresses when the node refuses private
//! ones.

use std::io::Read;
use std::time::Duration;

use forja_knowledge::DocFormat;
use forja_store::{FeedPoll, KnowledgeFeed, StoreError, Tenant};

use super::{AddSource, Knowledge, Pii};
use crate::{ControlError, Result};

/// How feeds are fetched.
#[derive(Debug, Clone)]
pub struct FeedPolicy {
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Largest feed document, bytes.
    pub max_bytes: u64,
    /// Redirects followed (a loop ends here).
    pub max_redirects: u32,
    /// Entries added per poll (the rest wait for the next one).
    pub max_entries: usize,
    /// Refuse URLs that resolve to non-public addresses.
    pub deny_private: bool,
}

impl Default for FeedPolicy {
    fn default() -> Self {
        FeedPolicy {
            timeout: Duration::from_secs(20),
            max_bytes: 8 << 20,
            max_redirects: 5,
            max_entries: 200,
            deny_private: false,
        }
    }
}

/// Shortest polling interval, seconds.
pub const MIN_INTERVAL_S: u64 = 60;

pub(super) fn agent(p: &FeedPolicy) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(p.timeout))
        .max_redirects(p.max_redirects)
        .build();
    crate::webhook::agent(config, p.deny_private)
}

/// Checks a feed URL before it is stored.
pub fn check_url(url: &str) -> Result<()> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= 2048
        && url.parse::<ureq::http::Uri>().is_ok_and(|u| u.host().is_some());
    if ok {
        Ok(())
    } else {
        Err(ControlError::invalid("url", "must be an http(s) URL of at most 2048 bytes"))
    }
}

impl Knowledge {
    fn fetch(&self, url: &str) -> std::result::Result<Vec<u8>, String> {
        let mut resp = self.agent.get(url).call().map_err(|e| match e {
            ureq::Error::StatusCode(c) => format!("the server answered HTTP {c}"),
            ureq::Error::Timeout(_) => "timed out".to_string(),
            ureq::Error::TooManyRedirects => {
                format!("more than {} redirects (a loop?)", self.feeds.max_redirects)
            }
            e => format!("cannot fetch it ({e})"),
        })?;
        let mut bytes = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(self.feeds.max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading the response failed ({e})"))?;
        if bytes.len() as u64 > self.feeds.max_bytes {
            return Err(format!("larger than {} MiB", self.feeds.max_bytes >> 20));
        }
        Ok(bytes)
    }

    /// Polls one feed now and records what happened (a failure is
    /// recorded, not returned: it is the feed's state).
    pub fn poll_feed(&self, feed: &KnowledgeFeed) -> Result<FeedPoll> {
        let now = self.control.store.now();
        let tenant = self.control.store.tenant(&feed.tenant_id)?;
        let pii = Pii::parse(&feed.pii).unwrap_or(Pii::Scrub);
        let result = self.fetch(&feed.url).and_then(|bytes| {
            feed_rs::parser::parse(&bytes[..])
                .map_err(|e| format!("not an RSS/Atom/JSON feed ({e})"))
        });
        let poll = match result {
            Err(why) => {
                // Twice the interval after one failure, up to 64 times.
                let backoff = 2u64 << feed.failures.min(5);
                FeedPoll {
                    title: None,
                    added: 0,
                    status: why,
                    failed: true,
                    next_at: now + (feed.interval_s * backoff) as i64,
                }
            }
            Ok(parsed) => {
                let title = parsed.title.as_ref().map(|t| t.content.trim().to_string());
                let (mut added, mut skipped, mut refused) = (0u64, 0u64, 0u64);
                for entry in parsed.entries.into_iter().take(self.feeds.max_entries) {
                    let origin = format!("{}\n{}", feed.id, entry.id);
                    if self.control.store.knowledge_origin_exists(&tenant.id, &origin)? {
                        skipped += 1;
                        continue;
                    }
                    let body = entry
                        .content
                        .and_then(|c| c.body)
                        .or_else(|| entry.summary.map(|s| s.content))
                        .unwrap_or_default();
                    let entry_title = entry.title.map(|t| t.content);
                    let url = entry.links.first().map(|l| l.href.clone());
                    let mut html = String::new();
                    if let Some(t) = &entry_title {
                        html.push_str("<h1>");
                        html.push_str(&t.replace('<', "&lt;"));
                        html.push_str("</h1>");
                    }
                    html.push_str(&body);
                    let add = AddSource {
                        title: entry_title,
                        name: url.clone().unwrap_or_else(|| entry.id.clone()),
                        url,
                        format: Some(DocFormat::Html),
                        bytes: html.into_bytes(),
                        pii,
                        kind: "feed_item",
                        origin: Some(origin),
                        feed_id: Some(feed.id.clone()),
                    };
                    match self.add_unsynced(&tenant, add) {
                        Ok(_) => added += 1,
                        Err(ControlError::Store(StoreError::Conflict(_))) => skipped += 1,
                        Err(ControlError::Store(e)) => return Err(e.into()),
                        Err(e) => {
                            tracing::info!(feed = %feed.id, "feed entry refused: {e}");
                            refused += 1;
                        }
                    }
                }
                FeedPoll {
                    title,
                    added,
                    status: format!("{added} new, {skipped} seen before, {refused} refused"),
                    failed: false,
                    next_at: now + feed.interval_s as i64,
                }
            }
        };
        // One index commit for the poll's entries.
        if poll.added > 0 {
            if let Err(e) = self.sync_index() {
                tracing::warn!("knowledge index not updated yet: {e}");
            }
        }
        self.control.store.knowledge_feed_polled(&feed.id, &poll)?;
        Ok(poll)
    }

    /// A tenant's feed.
    pub fn feed(&self, tenant: &Tenant, id: &str) -> Result<KnowledgeFeed> {
        Ok(self.control.store.knowledge_feed(&tenant.id, id)?)
    }

    /// Unfollows a feed and removes every entry it added.
    pub fn remove_feed(&self, tenant: &Tenant, id: &str) -> Result<KnowledgeFeed> {
        let f = self.control.store.remove_knowledge_feed(&tenant.id, id)?;
        self.refresh(tenant)?;
        Ok(f)
    }

    /// Polls up to `limit` due feeds of every tenant; returns how many.
    pub fn poll_due(&self, limit: usize) -> Result<usize> {
        let due = self.control.store.due_knowledge_feeds(self.control.store.now(), limit)?;
        for f in &due {
            if let Err(e) = self.poll_feed(f) {
                tracing::warn!(feed = %f.id, "feed poll failed: {e}");
            }
        }
        Ok(due.len())
    }
}
