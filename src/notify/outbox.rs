//! The outbox: every notification is on disk before it is sent, and stays until its
//! destination accepted it. One queue per notifier under `data_dir/outbox/`:
//!
//! - `<notifier>.jsonl`: entries, appended and fsynced before anything is sent. Several
//!   processes may append (the scheduler, `runner run`): appends hold an `flock` on the file.
//! - `<notifier>.done`: how far the queue is delivered, as a byte offset into the entries.
//!   Delivery is in order, so one number says it. It is written after the destination
//!   accepted a message and not fsynced: if runner is killed, the kernel still writes it; only
//!   an operating-system crash can lose it, and then the last messages before the crash are sent
//!   again (at-least-once).
//! - `dead/<notifier>.jsonl`: entries a destination refused for good, with the reason.
//!
//! When everything is delivered and the entries file has grown, it is emptied (under the same
//! lock, then the offset is reset); an append that finds the offset past the end of the file
//! (a crash between the two) resets it first, so nothing new is skipped.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::notice::Message;
use crate::alerts::event::{AlertEvent, holds_event};
use crate::store::daily::{complete_len, record_tail_repair};

/// Emptied once everything is delivered and it is at least this big.
const COMPACT_FROM_BYTES: u64 = 256 * 1024;
/// The offset is written as a fixed-width line, so rewriting it in place is one small write.
const DONE_WIDTH: usize = 20;

/// One queued notification: `{"queued_at": ..., "event": {...}}` or `{..., "report": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub queued_at: DateTime<Utc>,
    #[serde(flatten)]
    pub message: Message,
}

impl Entry {
    pub fn event(&self) -> Option<&AlertEvent> {
        match &self.message {
            Message::Event(e) => Some(e),
            Message::Report(_) => None,
        }
    }
}

/// An entry read back, with where it ends in the file (the offset that marks it done).
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub start: u64,
    pub end: u64,
    pub entry: Entry,
}

/// A line that could not be read (a torn write after a crash): it is moved to the dead letters.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    pub start: u64,
    pub end: u64,
    pub error: String,
    pub text: String,
}

/// What `read` found after the done offset.
#[derive(Debug, Default)]
pub struct Batch {
    pub pending: Vec<Pending>,
    pub unreadable: Vec<Unreadable>,
    /// Where the next read starts.
    pub end: u64,
}

#[derive(Debug, Serialize)]
struct DeadLetter<'a> {
    dead_at: DateTime<Utc>,
    notifier: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<&'a Entry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unreadable_line: Option<&'a str>,
}

/// One notifier's queue on disk.
#[derive(Debug)]
pub struct Queue {
    name: String,
    path: PathBuf,
    dead_path: PathBuf,
    /// The entries file, opened for appending and reading; the mutex orders this process's
    /// appends and compactions, the flock other processes'.
    file: Mutex<File>,
    done: File,
}

/// Alert ticks between queueing their notices and saving the state that says so; delivery
/// waits while there is one ([`hold_delivery`]).
static TICKS_SAVING: std::sync::LazyLock<tokio::sync::watch::Sender<usize>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::channel(0).0);

/// Keeps this process's delivery loops from sending until dropped. An alert tick takes it
/// before it queues its notices and drops it once its state is saved: a notice is on the wire
/// only after the slow part of its tick (the state file's fsync and rename), so a kill during
/// that part finds it queued and not sent, and the restart sends it once. Without it, a kill
/// there caught the notice on the wire and the restart sent it again.
pub struct DeliveryHold(());

pub fn hold_delivery() -> DeliveryHold {
    TICKS_SAVING.send_modify(|n| *n += 1);
    DeliveryHold(())
}

impl Drop for DeliveryHold {
    fn drop(&mut self) {
        TICKS_SAVING.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Whether an alert tick is holding delivery back.
pub fn delivery_held() -> bool {
    *TICKS_SAVING.borrow() > 0
}

/// Returns once no alert tick holds delivery back.
pub async fn delivery_released() {
    let mut saving = TICKS_SAVING.subscribe();
    // The sender lives in a static, so the channel never closes.
    let _ = saving.wait_for(|n| *n == 0).await;
}

/// `data_dir/outbox`.
pub fn outbox_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("outbox")
}

/// Holds the entries file's `flock` (std's `File::lock`) until dropped.
struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    fn exclusive(file: &'a File) -> io::Result<Flock<'a>> {
        file.lock()?;
        Ok(Flock(file))
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Queue {
    /// Opens (creating) the queue of `notifier` in `dir`.
    pub fn open(dir: &Path, notifier: &str) -> io::Result<Queue> {
        std::fs::create_dir_all(dir.join("dead"))?;
        let path = dir.join(format!("{notifier}.jsonl"));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let done = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(format!("{notifier}.done")))?;
        Ok(Queue {
            name: notifier.to_string(),
            path,
            dead_path: dir.join("dead").join(format!("{notifier}.jsonl")),
            file: Mutex::new(file),
            done,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_file(&self) -> std::sync::MutexGuard<'_, File> {
        self.file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How far the queue is delivered.
    pub fn done_offset(&self) -> io::Result<u64> {
        let mut text = String::new();
        (&self.done).seek(SeekFrom::Start(0))?;
        (&self.done).read_to_string(&mut text)?;
        Ok(text.trim().parse().unwrap_or(0))
    }

    /// Records that everything before `offset` is delivered.
    pub fn mark_done(&self, offset: u64) -> io::Result<()> {
        let line = format!("{offset:0DONE_WIDTH$}\n");
        self.done.write_all_at(line.as_bytes(), 0)
    }

    /// Appends entries and makes them durable before returning.
    pub fn append(&self, entries: &[Entry]) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(entries.len() * 1024);
        for entry in entries {
            serde_json::to_writer(&mut bytes, entry).map_err(io::Error::other)?;
            bytes.push(b'\n');
        }
        let guard = self.lock_file();
        let file: &File = &guard;
        let _flock = Flock::exclusive(file)?;
        let size = file.metadata()?.len();
        if self.done_offset()? > size {
            // A compaction emptied the file and stopped before resetting the offset.
            self.mark_done(0)?;
        }
        // A writer killed in the middle of its append (or one whose write failed) left part
        // of an entry at the end. That entry was never queued (its appender did not return),
        // so it is cut away rather than fenced: no one has read it (readers stop before a line
        // without its newline), and the flock keeps other appenders out meanwhile.
        let whole = complete_len(file, size)?;
        if whole < size {
            file.set_len(whole)?;
            record_tail_repair(
                "outbox",
                &self.path,
                size - whole,
                "cut it away; its entries are queued again by whoever appends them",
            );
        }
        let mut writer = file;
        crate::failpoint::torn_write("torn-outbox", &bytes, |half| {
            writer.write_all(half)?;
            file.sync_data()
        });
        if let Err(e) = writer.write_all(&bytes) {
            // Take back what part of it was written, so the next append starts on a whole line.
            let _ = file.set_len(whole);
            return Err(e);
        }
        file.sync_data()
    }

    /// Entries after `from` (the done offset, or where the last read ended), at most `max`.
    /// A line still being written (no newline yet) is left for the next read.
    pub fn read(&self, from: u64, max: usize) -> io::Result<Batch> {
        let file = self.lock_file().try_clone()?;
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(from))?;
        let mut batch = Batch {
            end: from,
            ..Batch::default()
        };
        let mut line = Vec::new();
        while batch.pending.len() < max {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            let start = batch.end;
            let end = start + n as u64;
            batch.end = end;
            match serde_json::from_slice::<Entry>(&line) {
                Ok(entry) => batch.pending.push(Pending { start, end, entry }),
                // An unreadable line ends a batch, or is a batch of its own, so marking a
                // batch done never skips past it unseen.
                Err(_) if !batch.pending.is_empty() => {
                    batch.end = start;
                    break;
                }
                Err(e) => {
                    batch.unreadable.push(Unreadable {
                        start,
                        end,
                        error: e.to_string(),
                        text: String::from_utf8_lossy(&line).trim_end().to_string(),
                    });
                    break;
                }
            }
        }
        Ok(batch)
    }

    /// Bytes queued and not yet delivered.
    pub fn backlog_bytes(&self) -> io::Result<u64> {
        let size = self.lock_file().metadata()?.len();
        Ok(size.saturating_sub(self.done_offset()?))
    }

    /// When the first entry not yet delivered was queued, if there is one.
    pub fn oldest_queued(&self) -> io::Result<Option<DateTime<Utc>>> {
        let batch = self.read(self.done_offset()?, 1)?;
        Ok(batch.pending.first().map(|p| p.entry.queued_at))
    }

    /// Keeps entries the destination refused for good, with the reason.
    pub fn dead_letter(
        &self,
        now: DateTime<Utc>,
        entries: &[&Entry],
        reason: &str,
    ) -> io::Result<()> {
        let mut bytes = Vec::new();
        for entry in entries {
            serde_json::to_writer(
                &mut bytes,
                &DeadLetter {
                    dead_at: now,
                    notifier: &self.name,
                    reason,
                    entry: Some(entry),
                    unreadable_line: None,
                },
            )
            .map_err(io::Error::other)?;
            bytes.push(b'\n');
        }
        self.append_dead(&bytes)
    }

    /// Keeps a line that could not be read, so nothing disappears without a trace.
    pub fn dead_line(&self, now: DateTime<Utc>, unreadable: &Unreadable) -> io::Result<()> {
        let reason = format!("unreadable outbox line: {}", unreadable.error);
        let mut bytes = serde_json::to_vec(&DeadLetter {
            dead_at: now,
            notifier: &self.name,
            reason: &reason,
            entry: None,
            unreadable_line: Some(&unreadable.text),
        })
        .map_err(io::Error::other)?;
        bytes.push(b'\n');
        self.append_dead(&bytes)
    }

    fn append_dead(&self, bytes: &[u8]) -> io::Result<()> {
        let mut dead = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.dead_path)?;
        dead.write_all(bytes)?;
        dead.sync_data()
    }

    pub fn dead_path(&self) -> &Path {
        &self.dead_path
    }

    /// Which of `ids` this queue has taken: in its entries file, or in the last one emptied.
    /// An interrupted alert tick asks before queueing its events again.
    /// Only whole entries count: a torn one (its appender killed in the middle of writing it)
    /// still holds its id, but it was never queued and must be queued again.
    pub fn has_events(&self, ids: &[&str]) -> io::Result<std::collections::HashSet<String>> {
        let mut found = std::collections::HashSet::new();
        // Lossy: a torn entry may end inside a multi-byte character.
        let bytes = std::fs::read(&self.path)?;
        let text = String::from_utf8_lossy(&bytes);
        // Everything after the last newline is an append cut short.
        let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
        for line in whole.lines() {
            for id in ids.iter().filter(|id| holds_event(line, id)) {
                if serde_json::from_str::<Entry>(line)
                    .is_ok_and(|entry| entry.event().is_some_and(|e| e.id == **id))
                {
                    found.insert(id.to_string());
                }
            }
        }
        // Written whole (atomically) from parsed entries when the file was emptied.
        if let Ok(recent) = std::fs::read_to_string(self.recent_path()) {
            found.extend(
                ids.iter()
                    .filter(|id| holds_event(&recent, id))
                    .map(|id| id.to_string()),
            );
        }
        Ok(found)
    }

    /// The event ids of the last emptied entries file.
    fn recent_path(&self) -> PathBuf {
        self.path.with_extension("recent")
    }

    /// Empties the entries file when everything in it is delivered and it has grown; returns
    /// whether it did. The ids of its events are kept (`<notifier>.recent`), so an alert tick
    /// interrupted just before still finds what it queued.
    pub fn compact_if_delivered(&self) -> io::Result<bool> {
        let file = self.lock_file();
        let _flock = Flock::exclusive(&file)?;
        let size = file.metadata()?.len();
        if size < COMPACT_FROM_BYTES || self.done_offset()? != size {
            return Ok(false);
        }
        let mut ids = String::new();
        for line in std::fs::read_to_string(&self.path)?.lines() {
            if let Ok(Entry {
                message: Message::Event(event),
                ..
            }) = serde_json::from_str::<Entry>(line)
            {
                ids.push_str(&format!("{{\"id\":\"{}\"}}\n", event.id));
            }
        }
        crate::store::atomic::write(&self.recent_path(), ids.as_bytes())?;
        file.set_len(0)?;
        file.sync_all()?;
        self.mark_done(0)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::event::EventKind;
    use crate::vocab::Severity;

    fn event(n: u32) -> AlertEvent {
        let at = DateTime::from_timestamp(1_800_000_000 + i64::from(n), 0).unwrap();
        let mut e = AlertEvent::example("cpu_high", EventKind::Firing, Severity::Warning, at);
        e.id = format!("id-{n}");
        e.summary = format!("event {n}");
        e
    }

    fn entry(n: u32) -> Entry {
        Entry {
            queued_at: event(n).at,
            message: Message::Event(event(n)),
        }
    }

    #[test]
    fn a_queue_knows_the_events_it_took_also_after_emptying() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), "hook").unwrap();
        let entries: Vec<Entry> = (0..1000).map(entry).collect();
        q.append(&entries).unwrap();
        let asked = ["id-1", "id-999", "id-1000"];
        let has = q.has_events(&asked).unwrap();
        assert!(has.contains("id-1") && has.contains("id-999") && !has.contains("id-1000"));
        q.mark_done(std::fs::metadata(q.path()).unwrap().len())
            .unwrap();
        assert!(q.compact_if_delivered().unwrap(), "big enough to empty");
        assert_eq!(std::fs::metadata(q.path()).unwrap().len(), 0);
        assert_eq!(
            q.has_events(&asked).unwrap(),
            has,
            "remembered after emptying"
        );
    }

    #[test]
    fn entries_come_back_in_order_until_marked_done() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), "slack").unwrap();
        q.append(&[entry(1), entry(2)]).unwrap();
        q.append(&[entry(3)]).unwrap();
        let batch = q.read(q.done_offset().unwrap(), 10).unwrap();
        let ids: Vec<&str> = batch
            .pending
            .iter()
            .map(|p| p.entry.event().unwrap().id.as_str())
            .collect();
        assert_eq!(ids, ["id-1", "id-2", "id-3"]);
        q.mark_done(batch.pending[1].end).unwrap();
        // A new process opening the queue starts after what was delivered.
        let again = Queue::open(dir.path(), "slack").unwrap();
        let batch = again.read(again.done_offset().unwrap(), 10).unwrap();
        assert_eq!(batch.pending.len(), 1);
        assert_eq!(batch.pending[0].entry.event().unwrap().id, "id-3");
        assert_eq!(
            again.read(0, 2).unwrap().pending.len(),
            2,
            "max is respected"
        );
    }

    #[test]
    fn a_torn_last_line_waits_and_a_corrupt_one_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), "hook").unwrap();
        q.append(&[entry(1)]).unwrap();
        let mut raw = OpenOptions::new().append(true).open(q.path()).unwrap();
        raw.write_all(b"{\"queued_at\": garbage}\n{\"partial\":")
            .unwrap();
        let batch = q.read(0, 10).unwrap();
        assert_eq!(
            batch.pending.len(),
            1,
            "a batch stops before an unreadable line"
        );
        assert!(batch.unreadable.is_empty());
        let batch = q.read(batch.end, 10).unwrap();
        assert!(batch.pending.is_empty());
        assert_eq!(batch.unreadable.len(), 1);
        assert!(batch.unreadable[0].text.contains("garbage"));
        let size = std::fs::metadata(q.path()).unwrap().len();
        assert!(q.read(batch.end, 10).unwrap().pending.is_empty());
        assert!(batch.end < size, "the partial line is left for later");
        q.dead_line(Utc::now(), &batch.unreadable[0]).unwrap();
        let dead = std::fs::read_to_string(q.dead_path()).unwrap();
        assert!(dead.contains("unreadable outbox line"), "{dead}");
    }

    #[test]
    fn a_delivered_queue_is_emptied_and_an_interrupted_emptying_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), "hook").unwrap();
        let many: Vec<Entry> = (0..800).map(entry).collect();
        q.append(&many).unwrap();
        let size = std::fs::metadata(q.path()).unwrap().len();
        assert!(size >= COMPACT_FROM_BYTES, "{size}");
        assert!(!q.compact_if_delivered().unwrap(), "not delivered yet");
        q.mark_done(size).unwrap();
        assert!(q.compact_if_delivered().unwrap());
        assert_eq!(std::fs::metadata(q.path()).unwrap().len(), 0);
        assert_eq!(q.done_offset().unwrap(), 0);

        // The crash case: emptied, offset not reset. The next append repairs it first.
        q.mark_done(size).unwrap();
        q.append(&[entry(7)]).unwrap();
        let batch = q.read(q.done_offset().unwrap(), 10).unwrap();
        assert_eq!(batch.pending.len(), 1);
        assert_eq!(batch.pending[0].entry.event().unwrap().id, "id-7");
    }

    #[test]
    fn refused_entries_are_kept_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), "slack").unwrap();
        let e = entry(5);
        q.dead_letter(Utc::now(), &[&e], "404 no_service: the webhook was revoked")
            .unwrap();
        let dead = std::fs::read_to_string(q.dead_path()).unwrap();
        let v: serde_json::Value = serde_json::from_str(dead.trim()).unwrap();
        assert_eq!(v["reason"], "404 no_service: the webhook was revoked");
        assert_eq!(v["entry"]["event"]["id"], "id-5");
        assert!(v["entry"]["queued_at"].is_string());
        assert_eq!(v["notifier"], "slack");
    }

    /// A writer killed half way through its append of three entries: the first is whole, the
    /// second torn, the third missing. The torn one was never queued: the replay must find it
    /// missing, and the next append must start on a line of its own.
    #[test]
    fn a_torn_append_is_not_taken_and_is_cut_away_before_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), "hook").unwrap();
        q.append(&[entry(0)]).unwrap();
        let mut bytes = Vec::new();
        for n in 1..=3 {
            serde_json::to_writer(&mut bytes, &entry(n)).unwrap();
            bytes.push(b'\n');
        }
        let first_len = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        let mut raw = OpenOptions::new().append(true).open(q.path()).unwrap();
        raw.write_all(&bytes[..first_len + 40]).unwrap();
        let before = crate::store::daily::tail_repairs()
            .get("outbox")
            .copied()
            .unwrap_or(0);

        // A new process replays the tick: it queues what the queue has not taken.
        let q = Queue::open(dir.path(), "hook").unwrap();
        let asked = ["id-1", "id-2", "id-3"];
        let has = q.has_events(&asked).unwrap();
        assert_eq!(
            has,
            ["id-1".to_string()].into(),
            "the torn id-2 was not taken"
        );
        q.append(&[entry(2), entry(3)]).unwrap();
        let batch = q.read(0, 10).unwrap();
        assert!(batch.unreadable.is_empty(), "{:?}", batch.unreadable);
        let ids: Vec<&str> = batch
            .pending
            .iter()
            .map(|p| p.entry.event().unwrap().id.as_str())
            .collect();
        assert_eq!(ids, ["id-0", "id-1", "id-2", "id-3"]);
        assert!(
            crate::store::daily::tail_repairs()
                .get("outbox")
                .copied()
                .unwrap_or(0)
                > before
        );
    }

    #[test]
    fn a_torn_entry_cut_inside_a_character_does_not_hide_the_whole_ones() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), "hook").unwrap();
        q.append(&[entry(1)]).unwrap();
        let mut torn = entry(2);
        if let Message::Event(e) = &mut torn.message {
            e.summary = "caf\u{e9} \u{e9}t\u{e9}".into();
        }
        let text = serde_json::to_string(&torn).unwrap();
        let cut = text.find('\u{e9}').unwrap() + 1;
        let mut raw = OpenOptions::new().append(true).open(q.path()).unwrap();
        raw.write_all(&text.as_bytes()[..cut]).unwrap();
        let has = q.has_events(&["id-1", "id-2"]).unwrap();
        assert_eq!(has, ["id-1".to_string()].into());
    }

    #[test]
    fn delivery_is_held_while_a_tick_saves() {
        let hold = hold_delivery();
        assert!(delivery_held());
        drop(hold);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), delivery_released())
                .await
                .unwrap()
        });
    }
}
