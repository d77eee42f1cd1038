use std::time::Duration;

use alert_core::{Event, EventLog, HistoryEntry, Offset, QueueMessage, StateError, Window};
use chrono::{DateTime, Utc};
use fred::{
    prelude::*,
    types::{Value, scripts::Script},
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    connection::Link,
    record::{LogRecord, StoredHistory, StoredWindow},
};

const SCRIPT: &str = include_str!("aggregate.lua");

/// Every key and channel, under one prefix, so that deployments and tests share a
/// Redis without seeing each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }

    /// The event log stream; entry ids are the events' offsets.
    pub fn log(&self) -> String {
        format!("{}log", self.prefix)
    }

    /// The live pub/sub channel.
    pub fn live(&self) -> String {
        format!("{}live", self.prefix)
    }

    /// Open windows by end time (the close schedule and the index of open windows).
    pub fn closing(&self) -> String {
        format!("{}closing", self.prefix)
    }

    pub fn window(&self, location: &str) -> String {
        format!("{}w:{location}", self.prefix)
    }

    pub fn history(&self, location: &str) -> String {
        format!("{}h:{location}", self.prefix)
    }
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub dedupe_ttl: Duration,
    /// Approximate number of events the log keeps for replay.
    pub log_max_len: u64,
    /// Alerts kept per location for `GET /api/history`.
    pub history_len: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            dedupe_ttl: Duration::from_secs(24 * 3600),
            log_max_len: 100_000,
            history_len: 100,
        }
    }
}

/// What one message did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    pub duplicate: bool,
    pub opens: u64,
    pub updates: u64,
    pub closes: u64,
    /// For each close (of a window that had ended before this alert arrived), how late
    /// it was, in ms after the window's end.
    pub close_lags_ms: Vec<i64>,
}

/// What one closer run did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Closed {
    pub closes: u64,
    /// How late each close was, in ms after its window's end.
    pub lags_ms: Vec<i64>,
    /// End of the earliest window still open.
    pub next_due: Option<DateTime<Utc>>,
    /// Redis's clock when it ran.
    pub now: DateTime<Utc>,
}

/// The Redis state: the script for writes, plain reads for the rest.
#[derive(Clone)]
pub struct Store {
    client: Client,
    link: Link,
    script: Script,
    keys: Keys,
    settings: StoreSettings,
    /// Becomes the epoch if this store is the first to write to the data set.
    epoch_candidate: String,
}

/// A queue message as the script reads it: times in ms, absent fields omitted.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum ScriptMessage<'a> {
    Alert(ScriptAlert<'a>),
    Cancel(ScriptCancel<'a>),
}

impl<'a> From<&'a QueueMessage> for ScriptMessage<'a> {
    fn from(message: &'a QueueMessage) -> Self {
        match message {
            QueueMessage::Alert(alert) => ScriptMessage::Alert(ScriptAlert {
                id: alert.id,
                key: alert.idempotency_key.as_deref(),
                reference: alert.reference.as_deref(),
                alert_type: &alert.alert_type,
                start: alert.start.timestamp_millis(),
                end: alert.end.timestamp_millis(),
                locations: &alert.locations,
                severity: alert.severity.as_deref(),
                title: alert.title.as_deref(),
                instructions: alert.instructions.as_deref(),
            }),
            QueueMessage::Cancel(cancel) => ScriptMessage::Cancel(ScriptCancel {
                id: cancel.id,
                key: cancel.idempotency_key.as_deref(),
                references: &cancel.references,
                locations: &cancel.locations,
            }),
        }
    }
}

/// The alert as the script reads it (times in ms, absent fields omitted).
#[derive(Serialize)]
struct ScriptAlert<'a> {
    id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    #[serde(rename = "type")]
    alert_type: &'a str,
    start: i64,
    end: i64,
    locations: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<&'a str>,
}

#[derive(Serialize)]
struct ScriptCancel<'a> {
    id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    references: &'a [String],
    locations: &'a [String],
}

impl Store {
    /// Connects (reconnecting by itself forever after, with [`crate::reconnect_policy`])
    /// and loads the script.
    pub async fn connect(url: &str, keys: Keys, settings: StoreSettings) -> Result<Store, Error> {
        let client = crate::connection::builder(url)?.build()?;
        client.init().await?;
        let link = Link::follow(&client);
        let script = Script::from_lua(SCRIPT);
        script.load(&client).await?;
        Ok(Store {
            client,
            link,
            script,
            keys,
            settings,
            epoch_candidate: Uuid::new_v4().simple().to_string(),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// The connection's state, `true` while up: it turns `false` as soon as the
    /// connection drops (before any command fails) and `true` once it is back, when
    /// the commands held meanwhile go out.
    pub fn connection(&self) -> watch::Receiver<bool> {
        self.link.watch()
    }

    /// Applies one queue message atomically. `now` is for tests; production passes
    /// `None` and the script uses Redis's clock, the same for every processor.
    pub async fn apply(
        &self,
        message: &QueueMessage,
        now: Option<DateTime<Utc>>,
    ) -> Result<Applied, Error> {
        let mut applied = self.apply_batch(std::slice::from_ref(message), now).await?;
        applied
            .pop()
            .ok_or_else(|| Error::new(ErrorKind::Parse, "empty script reply"))
    }

    /// Applies several queue messages in order, in one script call (one round trip),
    /// each atomically as [`Store::apply`] would. If the script fails, messages before
    /// the failing one may have been applied: retrying them is harmless (dedupe).
    pub async fn apply_batch(
        &self,
        messages: &[QueueMessage],
        now: Option<DateTime<Utc>>,
    ) -> Result<Vec<Applied>, Error> {
        // The script would answer `{}` (cjson's empty table), not a list: nothing to run.
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let payload: Vec<ScriptMessage> = messages.iter().map(ScriptMessage::from).collect();
        let payload = serde_json::to_string(&payload).expect("script payloads always serialise");
        let replies: Vec<ScriptReply> = decode_reply(&self.run("batch", now, payload).await?)?;
        if replies.len() != messages.len() {
            return Err(Error::new(
                ErrorKind::Parse,
                format!(
                    "{} script replies for {} messages",
                    replies.len(),
                    messages.len()
                ),
            ));
        }
        Ok(replies
            .into_iter()
            .map(|reply| Applied {
                duplicate: reply.status == ScriptStatus::Duplicate,
                opens: reply.opens,
                updates: reply.updates,
                closes: reply.closes,
                close_lags_ms: reply.close_lags_ms,
            })
            .collect())
    }

    /// Closes up to `limit` windows whose end has passed. Safe to run from every
    /// processor at once: each window is closed by exactly one run.
    pub async fn close_due(&self, now: Option<DateTime<Utc>>, limit: u32) -> Result<Closed, Error> {
        let reply: ScriptReply = decode_reply(&self.run("close", now, limit.to_string()).await?)?;
        Ok(Closed {
            closes: reply.closes,
            lags_ms: reply.close_lags_ms,
            next_due: reply.next_due.and_then(DateTime::from_timestamp_millis),
            now: reply
                .now
                .and_then(DateTime::from_timestamp_millis)
                .unwrap_or_default(),
        })
    }

    async fn run(
        &self,
        mode: &str,
        now: Option<DateTime<Utc>>,
        payload: String,
    ) -> Result<Value, Error> {
        let now = now
            .map(|t| t.timestamp_millis().to_string())
            .unwrap_or_default();
        let args: Vec<String> = vec![
            mode.to_owned(),
            self.keys.prefix.clone(),
            now,
            self.epoch_candidate.clone(),
            self.settings.log_max_len.to_string(),
            self.settings.dedupe_ttl.as_millis().to_string(),
            self.settings.history_len.to_string(),
            payload,
        ];
        self.script
            .evalsha_with_reload(&self.client, Vec::<String>::new(), args)
            .await
    }

    /// The current epoch, if any event was ever written to this data set.
    pub async fn epoch(&self) -> Result<Option<String>, Error> {
        self.client.get(self.keys.epoch()).await
    }

    /// Up to `limit` events after `after` (exclusive), oldest first.
    pub async fn events_after(&self, after: Offset, limit: u64) -> Result<Vec<Event>, Error> {
        // `(id` makes Redis start at the id after `after`; the last possible id has none,
        // and Redis answers "invalid start ID" (a client's `since`, answered 503).
        if after == Offset::new(u64::MAX, u64::MAX) {
            return Ok(Vec::new());
        }
        let entries: Vec<(String, Vec<(String, String)>)> = self
            .client
            .xrange(self.keys.log(), format!("({after}"), "+", Some(limit))
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|(offset, fields)| decode_entry(&offset, fields))
            .collect())
    }

    /// The newest `limit` events, oldest first.
    pub async fn latest_events(&self, limit: u64) -> Result<Vec<Event>, Error> {
        let entries: Vec<(String, Vec<(String, String)>)> = self
            .client
            .xrevrange(self.keys.log(), "+", "-", Some(limit))
            .await?;
        let mut events: Vec<Event> = entries
            .into_iter()
            .filter_map(|(offset, fields)| decode_entry(&offset, fields))
            .collect();
        events.reverse();
        Ok(events)
    }

    /// Offset of the oldest and the newest entry still in the log.
    pub async fn log_bounds(&self) -> Result<Option<(Offset, Offset)>, Error> {
        let first: Vec<(String, Vec<(String, String)>)> = self
            .client
            .xrange(self.keys.log(), "-", "+", Some(1))
            .await?;
        let last: Vec<(String, Vec<(String, String)>)> = self
            .client
            .xrevrange(self.keys.log(), "+", "-", Some(1))
            .await?;
        Ok(first
            .into_iter()
            .next()
            .zip(last.into_iter().next())
            .and_then(|(first, last)| Some((stream_offset(&first.0)?, stream_offset(&last.0)?))))
    }

    /// Open windows for `locations`, or all open windows when `None`.
    pub async fn active(&self, locations: Option<&[String]>) -> Result<Vec<Window>, Error> {
        let locations: Vec<String> = match locations {
            Some(locations) => locations.to_vec(),
            None => {
                self.client
                    .zrange(self.keys.closing(), 0, -1, None, false, None, false)
                    .await?
            }
        };
        if locations.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = locations.iter().map(|l| self.keys.window(l)).collect();
        let raw: Vec<Option<String>> = self.client.mget(keys).await?;
        Ok(raw
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str::<StoredWindow>(&json).ok())
            .map(Window::from)
            .collect())
    }

    /// The newest `limit` alerts processed for `location`, newest first.
    pub async fn history(&self, location: &str, limit: u64) -> Result<Vec<HistoryEntry>, Error> {
        let raw: Vec<String> = self
            .client
            .lrange(self.keys.history(location), 0, limit as i64 - 1)
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|json| serde_json::from_str::<StoredHistory>(&json).ok())
            .map(HistoryEntry::from)
            .collect())
    }

    /// Deletes every key under the prefix (tests and tooling; never in service).
    pub async fn delete_all(&self) -> Result<(), Error> {
        let pattern = format!("{}*", self.keys.prefix);
        let keys: Vec<String> = self
            .client
            .custom(fred::cmd!("KEYS"), vec![pattern])
            .await?;
        if !keys.is_empty() {
            let _: i64 = self.client.del(keys).await?;
        }
        Ok(())
    }
}

/// A stream entry id as an offset; Redis gives out nothing else, so anything else is a
/// foreign entry, logged and skipped.
fn stream_offset(id: &str) -> Option<Offset> {
    match id.parse() {
        Ok(offset) => Some(offset),
        Err(error) => {
            tracing::error!(%error, id, "event log entry id is not an offset");
            None
        }
    }
}

fn decode_entry(offset: &str, fields: Vec<(String, String)>) -> Option<Event> {
    let id = stream_offset(offset)?;
    let (_, body) = fields.into_iter().find(|(name, _)| name == "e")?;
    match serde_json::from_str::<LogRecord>(&body) {
        Ok(record) => Some(record.into_event(id)),
        Err(error) => {
            tracing::error!(%error, offset, "unreadable event log entry");
            None
        }
    }
}

/// What the script answers, as JSON: one per message in `batch` mode (a list), one per
/// run in `close` mode.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScriptReply {
    status: ScriptStatus,
    opens: u64,
    updates: u64,
    closes: u64,
    /// How late each close was, in ms after its window's end (absent when none).
    #[serde(default)]
    close_lags_ms: Vec<i64>,
    /// `close` mode: the end (ms) of the earliest window still open, if any.
    next_due: Option<i64>,
    /// `close` mode: Redis's clock (ms) when it ran.
    now: Option<i64>,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ScriptStatus {
    Applied,
    Duplicate,
    Closed,
}

fn decode_reply<T: serde::de::DeserializeOwned>(reply: &Value) -> Result<T, Error> {
    let unexpected = |why: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Parse,
            format!("unexpected script reply ({why}): {reply:?}"),
        )
    };
    let text = reply.as_str().ok_or_else(|| unexpected(&"not a string"))?;
    serde_json::from_str(&text).map_err(|error| unexpected(&error))
}

/// The Redis settings every service that reads or writes the state takes, flattened
/// into its `Config` so each flag and variable is defined once.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Redis URL (`redis://[:password@]host:port[/db]`).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: alert_core::Secret,
    /// Every key and channel starts with this.
    #[arg(long, env = "REDIS_PREFIX", default_value = "alerts:")]
    pub redis_prefix: String,
}

impl RedisArgs {
    pub fn keys(&self) -> Keys {
        Keys::new(self.redis_prefix.clone())
    }
}

/// Notify's view of the state, read from Redis.
#[async_trait::async_trait]
impl EventLog for Store {
    async fn epoch(&self) -> Result<Option<String>, StateError> {
        Ok(Store::epoch(self).await?)
    }

    async fn events_after(&self, after: Offset, limit: u64) -> Result<Vec<Event>, StateError> {
        Ok(Store::events_after(self, after, limit).await?)
    }

    async fn latest_events(&self, limit: u64) -> Result<Vec<Event>, StateError> {
        Ok(Store::latest_events(self, limit).await?)
    }

    async fn log_bounds(&self) -> Result<Option<(Offset, Offset)>, StateError> {
        Ok(Store::log_bounds(self).await?)
    }

    async fn active(&self, locations: Option<&[String]>) -> Result<Vec<Window>, StateError> {
        Ok(Store::active(self, locations).await?)
    }

    async fn history(&self, location: &str, limit: u64) -> Result<Vec<HistoryEntry>, StateError> {
        Ok(Store::history(self, location, limit).await?)
    }
}
