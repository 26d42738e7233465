//! A Redis stream read as one consumer of a group.
//!
//! At start (and after every reconnection) the consumer first reads its own pending
//! entries (delivered before a crash, never acknowledged), then new ones with `XREADGROUP
//! ... BLOCK`. Every `claimIdleMs` it takes over, with `XAUTOCLAIM`, entries another
//! consumer of the group left pending that long (a processor that died). An entry is
//! acknowledged only once its detections are in the tracker; one that cannot be handled
//! (unreadable, refused) or that was delivered more than `maxDeliveries` times goes to the
//! dead-letter stream with the reason, and is then acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamPendingCountReply, StreamReadReply,
};
use serde_json::{Map, Value};

use super::{number, text, unknown_keys, Failure, InputConfig, InputStats, Processor};
use crate::egress::EgressPolicy;
use crate::validation::Report;

/// A Redis stream input's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisStreamConfig {
    /// `redis://[user:password@]host:port[/db]` (`url`).
    pub url: String,
    /// The stream (`stream`, default `detections`).
    pub stream: String,
    /// The consumer group (`group`, default `synopticon`).
    pub group: String,
    /// This consumer (`consumer`, default the instance's name): stable, so a restart
    /// finds its own pending entries.
    pub consumer: String,
    /// The entry field holding the envelope's JSON (`field`, default `json`).
    pub field: String,
    /// Where the group starts on a stream it has never read (`start`: `0`, every entry,
    /// the default; `$`, only new ones).
    pub start: String,
    /// How long one read waits for entries (`blockMs`, default 1000).
    pub block: Duration,
    /// Entries per read (`batch`, default 100).
    pub batch: usize,
    /// Entries pending this long at another consumer are taken over (`claimIdleMs`,
    /// default 30000).
    pub claim_idle: Duration,
    /// An entry delivered more often than this is dead-lettered (`maxDeliveries`, 5).
    pub max_deliveries: u64,
    /// Where dead letters go (`deadLetter`, default `{stream}:dead`).
    pub dead_letter: String,
    /// Entries replayed, without raising events, when the processor starts: the ones
    /// handled just before it stopped, so tracks and line sides are where they were
    /// (`warmup`, default 300; 0: none).
    pub warmup: usize,
}

const FIELDS: &[&str] = &[
    "url",
    "stream",
    "group",
    "consumer",
    "field",
    "start",
    "blockMs",
    "batch",
    "claimIdleMs",
    "maxDeliveries",
    "deadLetter",
    "warmup",
];

impl RedisStreamConfig {
    pub(super) fn parse(
        map: &Map<String, Value>,
        instance: &str,
        _name: &str,
        report: &mut Report,
    ) -> Option<Self> {
        unknown_keys(map, FIELDS, report);
        let url = text(map, "url", "", report);
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            report.error("url: must be redis://[user:password@]host:port[/db] (or rediss://)");
        }
        let stream = text(map, "stream", "detections", report);
        let start = text(map, "start", "0", report);
        if start != "0" && start != "$" {
            report.error("start: must be \"0\" (every entry) or \"$\" (only new ones)");
        }
        let config = RedisStreamConfig {
            url,
            dead_letter: text(map, "deadLetter", &format!("{stream}:dead"), report),
            group: text(map, "group", "synopticon", report),
            consumer: text(map, "consumer", instance, report),
            field: text(map, "field", "json", report),
            start,
            block: Duration::from_millis(number(map, "blockMs", 1000, 10..=60_000, report)),
            batch: number(map, "batch", 100, 1..=10_000, report) as usize,
            claim_idle: Duration::from_millis(number(
                map,
                "claimIdleMs",
                30_000,
                100..=86_400_000,
                report,
            )),
            max_deliveries: number(map, "maxDeliveries", 5, 1..=1000, report),
            warmup: number(map, "warmup", 300, 0..=100_000, report) as usize,
            stream,
        };
        if config.claim_idle <= config.block {
            report.error(
                "claimIdleMs: must exceed blockMs, or entries a live consumer is handling \
                 would be taken from it",
            );
        }
        if config.dead_letter == config.stream {
            report.error("deadLetter: must differ from stream");
        }
        Some(config)
    }
}

/// Pause between connection attempts.
const RECONNECT: Duration = Duration::from_secs(1);
/// How often the group's pending count and lag are read.
const BACKLOG_EVERY: Duration = Duration::from_secs(2);

/// Consumes the stream until aborted, reconnecting as needed.
pub(super) async fn run(
    config: RedisStreamConfig,
    input: &InputConfig,
    stats: &Arc<InputStats>,
    processor: &Processor,
    egress: &EgressPolicy,
) {
    let mut warmed = false;
    loop {
        match consume(&config, input, stats, processor, egress, &mut warmed).await {
            Ok(()) => return,
            Err(e) => {
                stats.set_connected(false);
                stats.error(&input.name, e);
                tokio::time::sleep(RECONNECT).await;
            }
        }
    }
}

async fn connect(
    config: &RedisStreamConfig,
    egress: &EgressPolicy,
) -> Result<ConnectionManager, String> {
    let url = crate::distributor::redis::target_url(&config.url, egress).await?;
    let client = crate::distributor::redis::open_client(&url, None)?;
    // A blocking read holds the connection for `block`: the answer may take that long.
    let manager = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(config.block + Duration::from_secs(5)))
        .set_number_of_retries(1);
    client
        .get_connection_manager_with_config(manager)
        .await
        .map_err(|e| format!("cannot connect: {e}"))
}

async fn consume(
    config: &RedisStreamConfig,
    input: &InputConfig,
    stats: &Arc<InputStats>,
    processor: &Processor,
    egress: &EgressPolicy,
    warmed: &mut bool,
) -> Result<(), String> {
    let mut conn = connect(config, egress).await?;
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&config.stream)
        .arg(&config.group)
        .arg(&config.start)
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await;
    if let Err(e) = created {
        if e.code() != Some("BUSYGROUP") {
            return Err(format!("XGROUP CREATE {}: {e}", config.stream));
        }
    }
    stats.set_connected(true);
    tracing::info!(input = %input.name, stream = %config.stream, group = %config.group, consumer = %config.consumer, "reading the stream");
    // Acknowledgements go on their own connection: on the reading one they would wait
    // behind a blocking XREADGROUP, leaving handled entries pending for up to `blockMs`.
    let ack_conn = connect(config, egress).await?;
    let (acks, ids) = mpsc::channel(ACK_BATCH * 4);
    let acking = tokio::spawn(acker(
        ack_conn,
        config.stream.clone(),
        config.group.clone(),
        ids,
        stats.clone(),
    ));
    let consumed = read_loop(&mut conn, config, input, stats, processor, warmed, &acks).await;
    drop(acks);
    // What was handed over is acknowledged before the next connection reads again.
    let acked = acking.await.map_err(|e| e.to_string()).and_then(|r| r);
    consumed.and(acked)
}

async fn read_loop(
    conn: &mut ConnectionManager,
    config: &RedisStreamConfig,
    input: &InputConfig,
    stats: &Arc<InputStats>,
    processor: &Processor,
    warmed: &mut bool,
    acks: &mpsc::Sender<String>,
) -> Result<(), String> {
    let reader = Reader {
        config,
        input,
        stats,
        processor,
        acks,
    };
    // Own pending entries first: what this consumer took before it stopped. Before them,
    // once per process, the entries handled just before, replayed without events.
    let mut from = "0-0".to_string();
    loop {
        let reply = read(conn, config, &from, None).await?;
        if !*warmed {
            warm_up(conn, config, input, stats, processor, reply.first()).await;
            *warmed = true;
        }
        let Some(last) = reply.last().map(|e| e.id.clone()) else {
            break;
        };
        stats.redelivered(reply.len() as u64);
        handle_batch(conn, &reader, reply, true).await?;
        from = last;
    }

    let mut last_claim = Instant::now();
    let mut last_backlog = Instant::now() - BACKLOG_EVERY;
    loop {
        if last_backlog.elapsed() >= BACKLOG_EVERY {
            backlog(conn, config, stats).await;
            last_backlog = Instant::now();
        }
        if last_claim.elapsed() >= config.claim_idle.min(Duration::from_secs(10)) {
            claim(conn, &reader).await?;
            last_claim = Instant::now();
        }
        let entries = read(conn, config, ">", Some(config.block)).await?;
        if !entries.is_empty() {
            handle_batch(conn, &reader, entries, false).await?;
        }
    }
}

/// Replays the `warmup` entries before this consumer's first pending one (or before the
/// group's last delivered one) into the trackers without raising events: a restarted
/// processor's tracks then continue instead of starting over, so an object crossing a line
/// while it restarted is counted once, not missed.
async fn warm_up(
    conn: &mut ConnectionManager,
    config: &RedisStreamConfig,
    input: &InputConfig,
    stats: &InputStats,
    processor: &Processor,
    first_pending: Option<&StreamId>,
) {
    if config.warmup == 0 {
        return;
    }
    let end = match first_pending {
        Some(entry) => format!("({}", entry.id),
        None => {
            let reply: redis::RedisResult<StreamInfoGroupsReply> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&config.stream)
                .query_async(conn)
                .await;
            match reply
                .ok()
                .and_then(|r| r.groups.into_iter().find(|g| g.name == config.group))
            {
                Some(g) if g.last_delivered_id != "0-0" => g.last_delivered_id,
                _ => return,
            }
        }
    };
    let history: redis::RedisResult<redis::streams::StreamRangeReply> = redis::cmd("XREVRANGE")
        .arg(&config.stream)
        .arg(&end)
        .arg("-")
        .arg("COUNT")
        .arg(config.warmup)
        .query_async(conn)
        .await;
    let Ok(history) = history else { return };
    let replayed = history.ids.len();
    for entry in history.ids.iter().rev() {
        if let Some(raw) = entry.get::<Vec<u8>>(&config.field) {
            let _ = processor.handle(&raw, input, stats, true).await;
        }
    }
    if replayed > 0 {
        tracing::info!(input = %input.name, entries = replayed, "replayed the entries handled before the restart, without events");
    }
}

/// `XREADGROUP` from `id` (`>`: new entries; an id: this consumer's pending after it).
async fn read(
    conn: &mut ConnectionManager,
    config: &RedisStreamConfig,
    id: &str,
    block: Option<Duration>,
) -> Result<Vec<StreamId>, String> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(&config.group)
        .arg(&config.consumer)
        .arg("COUNT")
        .arg(config.batch);
    if let Some(block) = block {
        cmd.arg("BLOCK").arg(block.as_millis() as u64);
    }
    cmd.arg("STREAMS").arg(&config.stream).arg(id);
    let reply: Option<StreamReadReply> = cmd
        .query_async(conn)
        .await
        .map_err(|e| format!("XREADGROUP {}: {e}", config.stream))?;
    Ok(reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
        .unwrap_or_default())
}

/// Takes over entries another consumer left pending for `claim_idle`.
async fn claim(conn: &mut ConnectionManager, reader: &Reader<'_>) -> Result<(), String> {
    let Reader {
        config,
        input,
        stats,
        ..
    } = *reader;
    let mut start = "0-0".to_string();
    loop {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&config.stream)
            .arg(&config.group)
            .arg(&config.consumer)
            .arg(config.claim_idle.as_millis() as u64)
            .arg(&start)
            .arg("COUNT")
            .arg(config.batch)
            .query_async(conn)
            .await
            .map_err(|e| format!("XAUTOCLAIM {}: {e}", config.stream))?;
        if !reply.claimed.is_empty() {
            stats.redelivered(reply.claimed.len() as u64);
            tracing::info!(input = %input.name, entries = reply.claimed.len(), "took over entries another consumer left pending");
            handle_batch(conn, reader, reply.claimed, true).await?;
        }
        if reply.next_stream_id == "0-0" || reply.next_stream_id.is_empty() {
            return Ok(());
        }
        start = reply.next_stream_id;
    }
}

/// How often each of `entries` was delivered (they are this consumer's pending ones).
async fn deliveries(
    conn: &mut ConnectionManager,
    config: &RedisStreamConfig,
    entries: &[StreamId],
) -> HashMap<String, u64> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return HashMap::new();
    };
    let reply: redis::RedisResult<StreamPendingCountReply> = redis::cmd("XPENDING")
        .arg(&config.stream)
        .arg(&config.group)
        .arg(&first.id)
        .arg(&last.id)
        .arg(entries.len())
        .arg(&config.consumer)
        .query_async(conn)
        .await;
    reply
        .map(|r| {
            r.ids
                .into_iter()
                .map(|p| (p.id, p.times_delivered as u64))
                .collect()
        })
        .unwrap_or_default()
}

/// What handling a batch needs besides the connection.
struct Reader<'a> {
    config: &'a RedisStreamConfig,
    input: &'a InputConfig,
    stats: &'a InputStats,
    processor: &'a Processor,
    acks: &'a mpsc::Sender<String>,
}

async fn handle_batch(
    conn: &mut ConnectionManager,
    reader: &Reader<'_>,
    entries: Vec<StreamId>,
    again: bool,
) -> Result<(), String> {
    let Reader {
        config,
        input,
        stats,
        processor,
        acks,
    } = *reader;
    if !again {
        stats.received(entries.len() as u64);
    }
    let delivered = if again {
        deliveries(conn, config, &entries).await
    } else {
        HashMap::new()
    };
    // Entries delivered too often are dead letters without being read; the others go to
    // their trackers in one hand-over per source.
    let mut readable = Vec::with_capacity(entries.len());
    let mut raws = Vec::with_capacity(entries.len());
    for entry in &entries {
        let times = delivered.get(&entry.id).copied().unwrap_or(1);
        if times > config.max_deliveries {
            let reason = format!(
                "delivered {times} times (maxDeliveries {})",
                config.max_deliveries
            );
            dead_letter(conn, config, entry, &reason).await?;
            stats.dead_lettered();
            send_ack(acks, &entry.id).await?;
        } else {
            readable.push(entry);
            raws.push(entry.get::<Vec<u8>>(&config.field));
        }
    }
    let outcomes = processor.handle_many(raws, input, stats, false).await;
    for (entry, outcome) in readable.into_iter().zip(outcomes) {
        match outcome {
            Ok(handled) => {
                stats.outcome(&handled);
                send_ack(acks, &entry.id).await?;
            }
            Err(Failure::Dead(reason)) => {
                let reason = if entry.get::<Vec<u8>>(&config.field).is_none() {
                    format!("no {:?} field holding the envelope's JSON", config.field)
                } else {
                    reason
                };
                dead_letter(conn, config, entry, &reason).await?;
                stats.dead_lettered();
                send_ack(acks, &entry.id).await?;
            }
            Err(Failure::Later(reason)) => {
                // Left pending: this consumer reads it again after a reconnection, or
                // another takes it over once it has been idle long enough.
                stats.failed();
                stats.error(
                    &input.name,
                    format!("entry {} left for later: {reason}", entry.id),
                );
            }
        }
    }
    Ok(())
}

async fn send_ack(acks: &mpsc::Sender<String>, id: &str) -> Result<(), String> {
    acks.send(id.to_string())
        .await
        .map_err(|_| "the acknowledging task stopped".to_string())
}

/// Acknowledges entries as they are handed over: whatever has queued up since the last
/// `XACK` goes in the next one, so under load acknowledgements are batched and when idle
/// each goes at once.
async fn acker(
    mut conn: ConnectionManager,
    stream: String,
    group: String,
    mut ids: mpsc::Receiver<String>,
    stats: Arc<InputStats>,
) -> Result<(), String> {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    while let Some(id) = ids.recv().await {
        batch.push(id);
        while batch.len() < ACK_BATCH {
            match ids.try_recv() {
                Ok(id) => batch.push(id),
                Err(_) => break,
            }
        }
        let acked: usize = redis::cmd("XACK")
            .arg(&stream)
            .arg(&group)
            .arg(&batch)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("XACK {stream}: {e}"))?;
        stats.acknowledged(acked as u64);
        batch.clear();
    }
    Ok(())
}

/// Ids one `XACK` carries at most.
const ACK_BATCH: usize = 1000;

/// Copies an entry, with why, to the dead-letter stream.
async fn dead_letter(
    conn: &mut ConnectionManager,
    config: &RedisStreamConfig,
    entry: &StreamId,
    reason: &str,
) -> Result<(), String> {
    let mut fields: BTreeMap<String, redis::Value> = entry.map.clone().into_iter().collect();
    fields.insert(
        "reason".into(),
        redis::Value::SimpleString(reason.to_string()),
    );
    fields.insert("id".into(), redis::Value::SimpleString(entry.id.clone()));
    fields.insert(
        "stream".into(),
        redis::Value::SimpleString(config.stream.clone()),
    );
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&config.dead_letter).arg("*");
    for (k, v) in &fields {
        cmd.arg(k);
        match v {
            redis::Value::BulkString(b) => cmd.arg(b.as_slice()),
            redis::Value::SimpleString(s) => cmd.arg(s.as_str()),
            other => cmd.arg(format!("{other:?}")),
        };
    }
    let _: String = cmd
        .query_async(conn)
        .await
        .map_err(|e| format!("XADD {}: {e}", config.dead_letter))?;
    tracing::warn!(stream = %config.stream, entry = %entry.id, reason, "entry dead-lettered");
    Ok(())
}

/// Reads the group's pending count and lag for the status.
async fn backlog(conn: &mut ConnectionManager, config: &RedisStreamConfig, stats: &InputStats) {
    let reply: redis::RedisResult<StreamInfoGroupsReply> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&config.stream)
        .query_async(conn)
        .await;
    if let Ok(reply) = reply {
        if let Some(g) = reply.groups.iter().find(|g| g.name == config.group) {
            stats.set_backlog(g.pending as u64, g.lag.unwrap_or(0) as u64);
        }
    }
}
