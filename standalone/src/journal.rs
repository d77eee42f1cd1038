//! The journal in the data directory: what makes a standalone restart lose nothing.
//!
//! `journal-<first seq>.log`: every accepted message, one line each (`<seq>\t<json>`),
//! written and `fdatasync`ed before ingest answers 202. Writes from concurrent requests
//! are grouped into one sync (group commit) on a dedicated thread, which then hands the
//! batches to the processor in journal order.
//!
//! After each snapshot (snapshot.rs) the journal starts a new segment and deletes the
//! segments it covers. On start the messages after the snapshot are applied again
//! (dedupe makes any already applied harmless). A torn last line (a crash mid-write,
//! never acknowledged) is skipped. The event log is not kept: a restart starts a new
//! epoch, so clients resynchronise from a snapshot.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use alert_core::QueueMessage;
use tokio::sync::{mpsc, oneshot};

use crate::{
    pipeline::{Batch, ToProcessor},
    snapshot::sync_dir,
};

/// Most appends grouped into one write and sync.
const GROUP: usize = 1024;
/// Appends and compactions waiting for the journal thread.
const INBOX: usize = 1024;

/// Why a batch is not in the journal.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum JournalError {
    /// The disk refused it (full, read-only, failing).
    #[error("journal: {0}")]
    Write(Arc<io::Error>),
    /// The journal thread has stopped: the service is shutting down.
    #[error("the journal has stopped")]
    Stopped,
}

/// The journal thread's inbox: the queue appends, the processor compacts.
#[derive(Clone)]
pub(crate) struct JournalHandle {
    commands: mpsc::Sender<Command>,
}

impl JournalHandle {
    /// Writes and syncs `batch`; `Ok` once it is on disk, when it is on its way to the
    /// processor.
    pub(crate) async fn append(&self, batch: Batch) -> Result<(), JournalError> {
        let (done, written) = oneshot::channel();
        self.commands
            .send(Command::Append(Append { batch, done }))
            .await
            .map_err(|_| JournalError::Stopped)?;
        written.await.map_err(|_| JournalError::Stopped)?
    }

    /// Everything up to `applied` is in the snapshot: the segments holding only that
    /// may go.
    pub(crate) async fn compact(&self, applied: u64) {
        let _ = self.commands.send(Command::Compact(applied)).await;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }
}

enum Command {
    Append(Append),
    Compact(u64),
}

/// A batch for the journal, and who waits for it to be on disk.
struct Append {
    batch: Batch,
    done: oneshot::Sender<Result<(), JournalError>>,
}

pub(crate) struct Journal {
    dir: PathBuf,
    segment: File,
    /// A write failed and no fresh segment could be started: appending to this one
    /// could glue onto a partial line, so every append fails until one can.
    needs_segment: bool,
    /// Bytes in the current segment.
    written: u64,
    next_seq: u64,
    buffer: Vec<u8>,
}

/// Opens (creating) the data directory's journal and reads back the messages after
/// `applied` (the snapshot's): accepted, not yet applied, to apply before anything new.
pub(crate) fn open(dir: &Path, applied: u64) -> io::Result<(Journal, Batch)> {
    fs::create_dir_all(dir)?;
    let mut pending = Vec::new();
    let mut last = applied;
    let segments = segments(dir)?;
    for (_, path) in &segments {
        for line in BufReader::new(File::open(path)?).split(b'\n') {
            match decode(&line?) {
                Some((seq, message)) => {
                    last = last.max(seq);
                    if seq > applied {
                        pending.push(message);
                    }
                }
                None => tracing::warn!(path = %path.display(), "skipping a torn journal line"),
            }
        }
    }
    if let Some((_, newest)) = segments.last() {
        cut_torn_tail(newest)?;
    }
    if !pending.is_empty() {
        tracing::info!(messages = pending.len(), "recovering accepted messages");
    }
    let pending = Batch {
        messages: pending,
        seq: last,
        room: None,
    };
    Ok((Journal::start(dir.to_owned(), last + 1)?, pending))
}

/// Cuts a partial last line (a write the crash interrupted, never acknowledged), so
/// that appending to this segment cannot glue a new line onto it.
fn cut_torn_tail(path: &Path) -> io::Result<()> {
    let bytes = fs::read(path)?;
    let whole = bytes
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |at| at + 1);
    if whole < bytes.len() {
        tracing::warn!(path = %path.display(), bytes = bytes.len() - whole, "cutting a torn journal tail");
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(whole as u64)?;
        file.sync_all()?;
    }
    Ok(())
}

fn decode(line: &[u8]) -> Option<(u64, QueueMessage)> {
    let tab = line.iter().position(|byte| *byte == b'\t')?;
    let seq = std::str::from_utf8(&line[..tab]).ok()?.parse().ok()?;
    Some((seq, serde_json::from_slice(&line[tab + 1..]).ok()?))
}

/// The journal segments, oldest first, with the first sequence number of each.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_prefix("journal-")?.strip_suffix(".log"))
            .and_then(|seq| seq.parse().ok());
        if let Some(first) = first {
            found.push((first, path));
        }
    }
    found.sort();
    Ok(found)
}

impl Journal {
    fn start(dir: PathBuf, next_seq: u64) -> io::Result<Journal> {
        let segment = Journal::create_segment(&dir, next_seq)?;
        Ok(Journal {
            dir,
            segment,
            needs_segment: false,
            written: 0,
            next_seq,
            buffer: Vec::new(),
        })
    }

    fn create_segment(dir: &Path, first: u64) -> io::Result<File> {
        let segment = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("journal-{first:020}.log")))?;
        sync_dir(dir)?;
        Ok(segment)
    }

    /// Runs the journal on its own thread until every handle is gone.
    pub(crate) fn spawn(
        mut self,
        processor: ToProcessor,
    ) -> io::Result<(JournalHandle, std::thread::JoinHandle<()>)> {
        let (handle, mut commands) = mpsc::channel(INBOX);
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                while let Some(first) = commands.blocking_recv() {
                    let (mut appends, mut compact) = (Vec::new(), None);
                    let mut next = Some(first);
                    while let Some(command) = next.take() {
                        match command {
                            Command::Append(append) => appends.push(append),
                            Command::Compact(applied) => compact = Some(applied),
                        }
                        if appends.len() < GROUP {
                            next = commands.try_recv().ok();
                        }
                    }
                    self.write_group(appends, &processor);
                    if let Some(applied) = compact
                        && let Err(error) = self.compact(applied)
                    {
                        tracing::error!(%error, "cannot compact the journal");
                    }
                }
            })?;
        Ok((JournalHandle { commands: handle }, thread))
    }

    /// Writes and syncs a group of batches; on success hands them to the processor
    /// and answers their requests, otherwise answers with the error.
    fn write_group(&mut self, mut appends: Vec<Append>, processor: &ToProcessor) {
        if appends.is_empty() {
            return;
        }
        if self.needs_segment
            && let Err(error) = self.rotate()
        {
            let error = JournalError::Write(Arc::new(error));
            for append in appends {
                let _ = append.done.send(Err(error.clone()));
            }
            return;
        }
        self.buffer.clear();
        let mut seq = self.next_seq;
        for append in &mut appends {
            for message in &append.batch.messages {
                let _ = write!(self.buffer, "{seq}\t");
                serde_json::to_writer(&mut self.buffer, message).expect("messages serialise");
                self.buffer.push(b'\n');
                seq += 1;
            }
            append.batch.seq = seq - 1;
        }
        self.next_seq = seq;
        let written = self
            .segment
            .write_all(&self.buffer)
            .and_then(|()| self.segment.sync_data());
        match written {
            Ok(()) => {
                self.written += self.buffer.len() as u64;
                for Append { batch, done } in appends {
                    let _ = processor.send(batch);
                    let _ = done.send(Ok(()));
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot write the journal");
                let error = JournalError::Write(Arc::new(error));
                for append in appends {
                    let _ = append.done.send(Err(error.clone()));
                }
                // A partial write stays at the end of a closed segment, where it is
                // skipped as torn.
                self.needs_segment = true;
                if let Err(error) = self.rotate() {
                    tracing::error!(%error, "cannot start a journal segment");
                }
            }
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.segment = Journal::create_segment(&self.dir, self.next_seq)?;
        self.written = 0;
        self.needs_segment = false;
        Ok(())
    }

    /// Starts a new segment and deletes those holding only messages up to `applied`.
    fn compact(&mut self, applied: u64) -> io::Result<()> {
        if self.written > 0 {
            self.rotate()?;
        }
        let segments = segments(&self.dir)?;
        for pair in segments.windows(2) {
            let (_, path) = &pair[0];
            let (next_first, _) = pair[1];
            if next_first <= applied + 1 {
                fs::remove_file(path)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use alert_core::Alert;
    use chrono::{TimeDelta, Utc};

    use super::*;

    fn alert(location: &str) -> QueueMessage {
        let now = Utc::now();
        QueueMessage::Alert(Alert::new(
            location,
            "Rocket Alert",
            now,
            now + TimeDelta::minutes(5),
        ))
    }

    /// A crash mid-write leaves a partial line as the newest segment's tail; the next
    /// acknowledged line must not be glued onto it (and then skipped as torn).
    #[test]
    fn a_torn_tail_is_cut_so_the_next_acknowledged_line_survives() {
        let dir = std::env::temp_dir().join(format!("journal-test-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("journal-{:020}.log", 1)),
            b"1\t{\"kind\":\"al",
        )
        .unwrap();

        let (mut journal, pending) = open(&dir, 0).unwrap();
        assert!(pending.messages.is_empty());
        let (processor, mut applied) = mpsc::unbounded_channel();
        let (done, answer) = oneshot::channel();
        let accepted = alert("Haifa");
        let batch = Batch {
            messages: vec![accepted.clone()],
            seq: 0,
            room: None,
        };
        journal.write_group(vec![Append { batch, done }], &processor);
        answer.blocking_recv().unwrap().expect("on disk");
        assert_eq!(applied.try_recv().unwrap().messages, vec![accepted.clone()]);
        drop(journal);

        assert_eq!(open(&dir, 0).unwrap().1.messages, vec![accepted]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
