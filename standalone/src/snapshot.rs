//! `snapshot.json` in the data directory: core's `Aggregator` (open windows, dedupe
//! keys, references) and the journal sequence number of the last message applied to
//! it, replaced atomically. The journal (journal.rs) holds what came after.

use std::{
    fs::{self, File},
    io::{self, Write},
    path::Path,
};

use alert_core::Aggregator;
use serde::{Deserialize, Serialize};

const FILE: &str = "snapshot.json";

#[derive(Serialize)]
struct SnapshotRef<'a> {
    applied: u64,
    aggregator: &'a Aggregator,
}

/// What a snapshot holds.
#[derive(Deserialize)]
pub(crate) struct Snapshot {
    /// The journal sequence number of the last message applied to `aggregator`.
    pub(crate) applied: u64,
    pub(crate) aggregator: Aggregator,
}

/// The snapshot file's contents for `aggregator`, which has applied every message up
/// to `applied`.
pub(crate) fn encode(applied: u64, aggregator: &Aggregator) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&SnapshotRef {
        applied,
        aggregator,
    })
}

/// Replaces the snapshot atomically: write aside, sync, rename, sync the directory.
pub(crate) fn write(dir: &Path, bytes: &[u8]) -> io::Result<()> {
    let aside = dir.join(format!("{FILE}.tmp"));
    let mut file = File::create(&aside)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&aside, dir.join(FILE))?;
    sync_dir(dir)
}

/// The snapshot in `dir`, if there is one.
pub(crate) fn read(dir: &Path) -> io::Result<Option<Snapshot>> {
    let path = dir.join(FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {error}", path.display()),
            )
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Makes the creation, rename or removal of a file in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
