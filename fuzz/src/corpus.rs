//! The seed corpus, `fuzz/corpus/<kind>/`: one input per file for `json`, `cap` and
//! `raw`; one per line for `socketio`, `polling` and `rest` (packets and query
//! strings are one line each). Mutations start from these.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub json: Arc<Vec<Vec<u8>>>,
    pub cap: Arc<Vec<Vec<u8>>>,
    pub raw: Arc<Vec<Vec<u8>>>,
    pub socketio: Arc<Vec<String>>,
    pub polling: Arc<Vec<String>>,
    pub rest: Arc<Vec<String>>,
}

/// The corpus in the source tree.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

impl Corpus {
    pub fn load(dir: &Path) -> std::io::Result<Corpus> {
        let files = |kind: &str| -> std::io::Result<Vec<Vec<u8>>> {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join(kind))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.is_file())
                .collect();
            paths.sort();
            paths.iter().map(std::fs::read).collect()
        };
        let lines = |kind: &str| -> std::io::Result<Vec<String>> {
            Ok(files(kind)?
                .iter()
                .flat_map(|file| {
                    String::from_utf8_lossy(file)
                        .lines()
                        .filter(|line| !line.is_empty() && !line.starts_with("# "))
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect())
        };
        let corpus = Corpus {
            json: Arc::new(files("json")?),
            cap: Arc::new(files("cap")?),
            raw: Arc::new(files("raw")?),
            socketio: Arc::new(lines("socketio")?),
            polling: Arc::new(lines("polling")?),
            rest: Arc::new(lines("rest")?),
        };
        let empty = [
            ("json", corpus.json.is_empty()),
            ("cap", corpus.cap.is_empty()),
            ("raw", corpus.raw.is_empty()),
            ("socketio", corpus.socketio.is_empty()),
            ("polling", corpus.polling.is_empty()),
            ("rest", corpus.rest.is_empty()),
        ];
        if let Some((kind, _)) = empty.iter().find(|(_, empty)| *empty) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no seeds in {}", dir.join(kind).display()),
            ));
        }
        Ok(corpus)
    }
}
