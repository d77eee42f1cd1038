//! Latency recording without contention: one recorder per worker thread,
//! registered once, merged when the run ends. Values are microseconds.

use std::{
    cell::RefCell,
    sync::{Arc, Mutex, OnceLock},
    time::{SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use hdrhistogram::{
    Histogram,
    serialization::{Deserializer, Serializer, V2Serializer},
};
use serde::Serialize;

/// Most seconds a timeline keeps, and most broadcasts tracked one by one.
const MAX_SECONDS: usize = 3600;
pub(crate) const MAX_TRACKED_SEQS: u64 = 1_000_000;

/// Microseconds since the Unix epoch (the clock every process on this machine shares).
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

pub(crate) fn histogram(sigfig: u8) -> Histogram<u64> {
    let mut h = Histogram::new(sigfig).expect("sigfig is 2 or 3");
    h.auto(true);
    h
}

/// Records a value, growing the histogram as needed (`saturating_record` would
/// clamp to the current range instead of growing).
pub(crate) fn record(h: &mut Histogram<u64>, value: u64) {
    let _ = h.record(value.max(1));
}

/// Per-broadcast figures: deliveries and the latest receipt.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct SeqStat {
    pub(crate) delivered: u64,
    pub(crate) last_us: u64,
}

/// What one thread (or the merge of all) has recorded.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub(crate) latency: Histogram<u64>,
    pub(crate) per_second: Vec<Histogram<u64>>,
    pub(crate) per_seq: Vec<SeqStat>,
    /// First receipts (the ones in `latency`).
    pub(crate) unique: u64,
    pub(crate) duplicates: u64,
    /// Receipts too far behind the newest one to check for duplicates; counted as unique.
    pub(crate) out_of_window: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            latency: histogram(3),
            per_second: Vec::new(),
            per_seq: Vec::new(),
            unique: 0,
            duplicates: 0,
            out_of_window: 0,
        }
    }
}

impl Recorder {
    /// Records a first receipt of broadcast `seq`, `latency_us` after it was sent,
    /// at `at_us` (unix µs).
    pub(crate) fn record(&mut self, seq: u64, latency_us: u64, at_us: u64) {
        self.unique += 1;
        record(&mut self.latency, latency_us.max(1));
        let second = (at_us.saturating_sub(start_us()) / 1_000_000) as usize;
        if second < MAX_SECONDS {
            if self.per_second.len() <= second {
                self.per_second.resize_with(second + 1, || histogram(2));
            }
            record(&mut self.per_second[second], latency_us.max(1));
        }
        if seq < MAX_TRACKED_SEQS {
            let i = seq as usize;
            if self.per_seq.len() <= i {
                self.per_seq.resize(i + 1, SeqStat::default());
            }
            let stat = &mut self.per_seq[i];
            stat.delivered += 1;
            stat.last_us = stat.last_us.max(latency_us);
        }
    }

    pub(crate) fn merge(&mut self, other: &Recorder) {
        self.latency
            .add(&other.latency)
            .expect("auto-resizing histograms");
        if self.per_second.len() < other.per_second.len() {
            self.per_second
                .resize_with(other.per_second.len(), || histogram(2));
        }
        for (mine, theirs) in self.per_second.iter_mut().zip(&other.per_second) {
            mine.add(theirs).expect("auto-resizing histograms");
        }
        if self.per_seq.len() < other.per_seq.len() {
            self.per_seq.resize(other.per_seq.len(), SeqStat::default());
        }
        for (mine, theirs) in self.per_seq.iter_mut().zip(&other.per_seq) {
            mine.delivered += theirs.delivered;
            mine.last_us = mine.last_us.max(theirs.last_us);
        }
        self.unique += other.unique;
        self.duplicates += other.duplicates;
        self.out_of_window += other.out_of_window;
    }
}

static START_US: OnceLock<u64> = OnceLock::new();
static REGISTRY: Mutex<Vec<Arc<Mutex<Recorder>>>> = Mutex::new(Vec::new());

/// The run's time zero for timelines; the first call fixes it.
pub(crate) fn start_us() -> u64 {
    *START_US.get_or_init(now_us)
}

thread_local! {
    static LOCAL: RefCell<Option<Arc<Mutex<Recorder>>>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's recorder (uncontended lock; registered on first use).
pub(crate) fn with_local<R>(f: impl FnOnce(&mut Recorder) -> R) -> R {
    LOCAL.with(|cell| {
        let mut slot = cell.borrow_mut();
        let recorder = slot.get_or_insert_with(|| {
            let recorder = Arc::new(Mutex::new(Recorder::default()));
            REGISTRY
                .lock()
                .expect("registry lock")
                .push(Arc::clone(&recorder));
            recorder
        });
        let mut guard = recorder.lock().expect("recorder lock");
        f(&mut guard)
    })
}

/// First receipts so far, over all threads (for progress).
pub(crate) fn unique_so_far() -> u64 {
    let registry = REGISTRY.lock().expect("registry lock");
    registry
        .iter()
        .map(|r| r.lock().expect("recorder lock").unique)
        .sum()
}

/// Everything recorded, merged.
pub(crate) fn collect() -> Recorder {
    let registry = REGISTRY.lock().expect("registry lock");
    let mut all = Recorder::default();
    for recorder in registry.iter() {
        all.merge(&recorder.lock().expect("recorder lock"));
    }
    all
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct Summary {
    pub(crate) count: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) mean_ms: f64,
}

pub(crate) fn summary(h: &Histogram<u64>) -> Summary {
    let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
    if h.is_empty() {
        return Summary {
            count: 0,
            p50_ms: 0.0,
            p90_ms: 0.0,
            p99_ms: 0.0,
            p999_ms: 0.0,
            max_ms: 0.0,
            mean_ms: 0.0,
        };
    }
    Summary {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
    }
}

/// A histogram as base64 of its V2 encoding, so reports from several processes merge exactly.
pub(crate) fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serialising to memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn decode(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
    let mut h: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice())?;
    h.auto(true);
    Ok(h)
}

/// Duplicate detection in 16 bytes per connection: the newest sequence number seen
/// and a bitmap of the 64 before it. Broadcasts arrive nearly in order, so this
/// catches a repeat; one more than 64 behind cannot be checked and is counted apart.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SeenWindow {
    newest: u64,
    /// Bit i set: `newest - i` seen. Bit 0 also marks "anything seen".
    bits: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    First,
    Duplicate,
    TooOld,
}

impl SeenWindow {
    pub(crate) fn see(&mut self, seq: u64) -> Seen {
        if self.bits == 0 {
            self.newest = seq;
            self.bits = 1;
            return Seen::First;
        }
        if seq > self.newest {
            let shift = seq - self.newest;
            self.bits = if shift >= 64 { 0 } else { self.bits << shift };
            self.bits |= 1;
            self.newest = seq;
            return Seen::First;
        }
        let behind = self.newest - seq;
        if behind >= 64 {
            return Seen::TooOld;
        }
        let bit = 1u64 << behind;
        if self.bits & bit != 0 {
            Seen::Duplicate
        } else {
            self.bits |= bit;
            Seen::First
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_in_milliseconds() {
        let mut h = histogram(3);
        for us in 1..=1000u64 {
            h.record(us * 10).unwrap();
        }
        let s = summary(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 5.0).abs() < 0.01, "{s:?}");
        assert!((s.p99_ms - 9.9).abs() < 0.01, "{s:?}");
        assert!((s.max_ms - 10.0).abs() < 0.01, "{s:?}");
        assert_eq!(summary(&histogram(3)).count, 0);
        let mut grows = histogram(3);
        record(&mut grows, 2_500_000);
        assert!(
            (summary(&grows).max_ms - 2500.0).abs() < 2.0,
            "{:?}",
            summary(&grows)
        );
    }

    #[test]
    fn histograms_round_trip_through_base64() {
        let mut h = histogram(3);
        for v in [1u64, 50, 1234, 99_999] {
            h.record(v).unwrap();
        }
        let back = decode(&encode(&h)).unwrap();
        assert_eq!(summary(&back), summary(&h));
    }

    #[test]
    fn recorders_merge() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        let t = start_us();
        a.record(0, 100, t);
        a.record(1, 300, t + 2_000_000);
        b.record(1, 900, t);
        a.merge(&b);
        assert_eq!(a.unique, 3);
        assert_eq!(a.per_seq[1].delivered, 2);
        assert_eq!(a.per_seq[1].last_us, 900);
        assert_eq!(a.per_second.len(), 3);
        assert_eq!(a.per_second[0].len(), 2);
    }

    #[test]
    fn seen_window_finds_duplicates() {
        let mut w = SeenWindow::default();
        assert_eq!(w.see(5), Seen::First);
        assert_eq!(w.see(5), Seen::Duplicate);
        assert_eq!(w.see(7), Seen::First);
        assert_eq!(w.see(6), Seen::First);
        assert_eq!(w.see(6), Seen::Duplicate);
        assert_eq!(w.see(0), Seen::First);
        assert_eq!(w.see(200), Seen::First);
        assert_eq!(w.see(7), Seen::TooOld);
        assert_eq!(w.see(200), Seen::Duplicate);
        let mut zero = SeenWindow::default();
        assert_eq!(zero.see(0), Seen::First);
        assert_eq!(zero.see(0), Seen::Duplicate);
    }
}
