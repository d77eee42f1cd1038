//! Generation: a seeded source of choices, `arbitrary` for unstructured values, the
//! dictionaries of values that break parsers, and mutators over the seed corpus.
//!
//! Every case is a pure function of `(seed, target, index)` and the run's [`Context`]
//! (its clock, the epoch and offsets the stack had when the run started), so the same
//! command generates the same inputs; a failure file keeps the concrete case anyway.

use arbitrary::{Arbitrary, Unstructured};

/// SplitMix64: small, fast, and good enough to choose inputs with.
pub struct Gen {
    state: u64,
}

impl Gen {
    /// The generator of one case.
    pub fn for_case(seed: u64, target: &str, index: u64) -> Gen {
        let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
        for byte in target.bytes() {
            state = (state ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut g = Gen {
            state: state ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03),
        };
        g.u64();
        g
    }

    pub fn u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.u64() % 100 < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.u64() as u8).collect()
    }

    /// `lo..=hi` random bytes.
    pub fn bytes_in(&mut self, lo: usize, hi: usize) -> Vec<u8> {
        let len = self.range(lo, hi);
        self.bytes(len)
    }

    /// A string `arbitrary` builds from `lo..=hi` random bytes.
    pub fn text_in(&mut self, lo: usize, hi: usize) -> String {
        let len = self.range(lo, hi);
        self.arbitrary::<String>(len)
    }

    /// A value `arbitrary` builds from `len` random bytes: the same shapes a
    /// cargo-fuzz target would get from libFuzzer.
    pub fn arbitrary<T: for<'a> Arbitrary<'a> + Default>(&mut self, len: usize) -> T {
        let raw = self.bytes(len);
        T::arbitrary(&mut Unstructured::new(&raw)).unwrap_or_default()
    }

    /// Small counts are common, big ones happen.
    pub fn count(&mut self, max: usize) -> usize {
        match self.below(10) {
            0..=5 => self.below(4.min(max + 1)),
            6..=8 => self.below(max.min(16) + 1),
            _ => self.below(max + 1),
        }
    }
}

/// The run's clock and state, for inputs that must be valid "now".
#[derive(Debug, Clone)]
pub struct Context {
    /// Start of the run, truncated to the minute.
    pub now: chrono::DateTime<chrono::Utc>,
    /// notify's epoch when the run started (for `since` that can be recovered).
    pub epoch: Option<String>,
    /// Offsets of events in the log when the run started.
    pub offsets: Vec<String>,
    /// A valid API key of the keyed in-process router.
    pub api_key: String,
    pub corpus: crate::corpus::Corpus,
}

/// Locations the stack's seed alerts use: subscriptions to them see real windows.
pub const LOCATIONS: &[&str] = &["Sderot", "Haifa", "Tel Aviv", "Eilat", "Fuzz City"];

/// Strings that broke, or could break, text handling somewhere.
pub const STRINGS: &[&str] = &[
    "",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\u{0}",
    "\u{1}",
    "\u{1f}",
    "\u{7f}",
    "\u{85}",
    "\u{9f}",
    "\u{a0}",
    "\u{2028}",
    "\u{200b}",
    "\u{feff}",
    "\u{fffd}",
    "\u{10ffff}",
    "\u{0}all",
    "all",
    "😀",
    "ש",
    "Sderot",
    " Haifa ",
    "Tel Aviv",
    "a,b",
    ",",
    ",,",
    "%",
    "%00",
    "%zz",
    "%2C",
    "+",
    "&",
    "=",
    "#",
    "?",
    "../",
    "\\",
    "\"",
    "'",
    "<",
    ">",
    "&amp;",
    "&#0;",
    "&#x85;",
    "]]>",
    "null",
    "true",
    "[]",
    "{}",
    "0",
    "-1",
    "1e309",
    "NaN",
    "0-0",
    "1-0",
    "1700000000000-0",
    "9999999999999-0",
    "18446744073709551615-0",
    "18446744073709551615-18446744073709551615",
    "18446744073709551616-0",
    "0-18446744073709551615",
    "+1-0",
    " 1-0 ",
    "1-",
    "-",
    "epoch",
];

/// Long strings around the limits (128 characters a location, 256 a key, 4096 a text).
pub fn long_string(g: &mut Gen) -> String {
    let unit = g.pick(&["x", "é", "😀", " ", "\u{0}", "ab,"]);
    let len = g.pick(&[127usize, 128, 129, 255, 256, 257, 4096, 4097, 20_000]);
    unit.repeat(len)
}

/// A string for a text field: valid-looking, interesting, long or arbitrary.
pub fn string(g: &mut Gen) -> String {
    match g.below(10) {
        0..=2 => g.pick(LOCATIONS).to_owned(),
        3..=5 => g.pick(STRINGS).to_owned(),
        6 => long_string(g),
        7 => {
            let a = g.pick(STRINGS);
            let b = g.pick(LOCATIONS);
            let c = g.pick(STRINGS);
            format!("{a}{b}{c}")
        }
        _ => g.arbitrary::<String>(24),
    }
}

/// JSON number texts: the edges of f64, i64 and u64, and the duration limits.
pub const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "0.0",
    "-0.0",
    "1",
    "-1",
    "2",
    "5",
    "10",
    "1.5",
    "0.00001",
    "1e-320",
    "5e-324",
    "1439.99999",
    "1440",
    "1440.0000001",
    "1441",
    "86400",
    "86401",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "1e19",
    "1e308",
    "1.7976931348623157e308",
    "-1.7976931348623157e308",
    "1E2",
    "1e+2",
    "100000000000000000000000000000000000000000",
];

/// RFC 3339 edges; `now`-relative ones are added by [`timestamp`].
pub const TIMESTAMPS: &[&str] = &[
    "2026-11-22T10:00:00Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999999-23:59",
    "0000-01-01T00:00:00Z",
    "0000-01-01T00:00:00+23:59",
    "1969-12-31T23:59:59.999Z",
    "1970-01-01T00:00:00Z",
    "2026-02-29T00:00:00Z",
    "2024-02-29T00:00:00Z",
    "2026-11-22T10:00:60Z",
    "2026-12-31T23:59:60.999+00:00",
    "2026-11-22T10:00:00.123456789123Z",
    "2026-11-22t10:00:00z",
    "2026-11-22 10:00:00Z",
    "2026-11-22T10:00:00",
    "2026-11-22T10:00:00+24:00",
    "2026-11-22T10:00:00-00:00",
    "+2026-11-22T10:00:00Z",
    "20261122T100000Z",
    "2026-11-22",
    "",
];

/// A timestamp: mostly near the run's clock (so alerts are live), sometimes an edge.
pub fn timestamp(g: &mut Gen, ctx: &Context) -> String {
    if g.chance(60) {
        let shift = chrono::TimeDelta::seconds(g.range(0, 7200) as i64 - 3600);
        let time = ctx.now + shift;
        match g.below(3) {
            0 => time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            1 => time.to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
            _ => time
                .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).expect("valid"))
                .to_rfc3339(),
        }
    } else if g.chance(50) {
        let years = g.pick(&["24", "25", "26", "27"]);
        format!(
            "20{years}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            g.below(14),
            g.below(33),
            g.below(25),
            g.below(61),
            g.below(62)
        )
    } else {
        g.pick(TIMESTAMPS).to_owned()
    }
}

/// A JSON value written as text by [`Node::write`]: numbers stay text, so `1e309` and
/// `-0` reach the parser as written, and objects may repeat keys.
#[derive(Debug, Clone)]
pub enum Node {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Node>),
    Obj(Vec<(String, Node)>),
    /// Text spliced in as is (broken JSON on purpose).
    Raw(String),
}

impl Node {
    pub fn from_value(value: &serde_json::Value) -> Node {
        match value {
            serde_json::Value::Null => Node::Null,
            serde_json::Value::Bool(b) => Node::Bool(*b),
            serde_json::Value::Number(n) => Node::Num(n.to_string()),
            serde_json::Value::String(s) => Node::Str(s.clone()),
            serde_json::Value::Array(items) => {
                Node::Arr(items.iter().map(Node::from_value).collect())
            }
            serde_json::Value::Object(map) => Node::Obj(
                map.iter()
                    .map(|(k, v)| (k.clone(), Node::from_value(v)))
                    .collect(),
            ),
        }
    }

    pub fn write(&self, out: &mut String) {
        match self {
            Node::Null => out.push_str("null"),
            Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Node::Num(n) | Node::Raw(n) => out.push_str(n),
            Node::Str(s) => out.push_str(&serde_json::Value::from(s.as_str()).to_string()),
            Node::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Node::Obj(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    Node::Str(key.clone()).write(out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    /// Every node, depth first (for choosing one to mutate).
    fn count(&self) -> usize {
        1 + match self {
            Node::Arr(items) => items.iter().map(Node::count).sum(),
            Node::Obj(fields) => fields.iter().map(|(_, v)| v.count()).sum(),
            _ => 0,
        }
    }

    fn nth_mut(&mut self, n: usize) -> Option<&mut Node> {
        if n == 0 {
            return Some(self);
        }
        let mut n = n - 1;
        let children: Vec<&mut Node> = match self {
            Node::Arr(items) => items.iter_mut().collect(),
            Node::Obj(fields) => fields.iter_mut().map(|(_, v)| v).collect(),
            _ => return None,
        };
        for child in children {
            let size = child.count();
            if n < size {
                return child.nth_mut(n);
            }
            n -= size;
        }
        None
    }
}

/// A scalar or small structure that a field might hold.
pub fn json_leaf(g: &mut Gen, ctx: &Context) -> Node {
    match g.below(12) {
        0 => Node::Null,
        1 => Node::Bool(g.chance(50)),
        2 | 3 => Node::Num(g.pick(NUMBERS).to_owned()),
        4 => Node::Str(timestamp(g, ctx)),
        5 => Node::Str(g.pick(NUMBERS).to_owned()),
        6 => Node::Arr((0..g.count(5)).map(|_| Node::Str(string(g))).collect()),
        7 => Node::Obj(vec![(string(g), Node::Str(string(g)))]),
        8 => Node::Raw(
            g.pick(&[
                "NaN",
                "Infinity",
                "-",
                "01",
                "1.",
                ".5",
                "\"\\ud800\"",
                "\"\\u0000\"",
            ])
            .to_owned(),
        ),
        _ => Node::Str(string(g)),
    }
}

/// One alert object: each field valid, absent, or replaced by something else.
pub fn json_alert(g: &mut Gen, ctx: &Context) -> Node {
    let mut fields: Vec<(String, Node)> = Vec::new();
    let valid = g.chance(40); // mostly valid: the deep paths are reached
    let mut push = |g: &mut Gen, key: &str, good: Node, odds: u64| {
        if g.chance(odds) {
            let value = if valid || g.chance(70) {
                good
            } else {
                json_leaf(g, ctx)
            };
            fields.push((key.to_owned(), value));
        }
    };
    if g.chance(60) {
        let location = Node::Str(if g.chance(80) {
            g.pick(LOCATIONS).to_owned()
        } else {
            string(g)
        });
        push(g, "location", location, 100);
    } else {
        let n = if g.chance(5) {
            g.pick(&[1000usize, 1001, 2000]).to_owned()
        } else {
            g.range(1, 4)
        };
        let list = (0..n)
            .map(|i| {
                Node::Str(if n > 5 {
                    format!("L{i}")
                } else if g.chance(80) {
                    g.pick(LOCATIONS).to_owned()
                } else {
                    string(g)
                })
            })
            .collect();
        push(g, "locations", Node::Arr(list), 100);
    }
    let alert_type = Node::Str(
        g.pick(&["Rocket Alert", "Earthquake", "Flood", "Tsunami"])
            .to_owned(),
    );
    push(g, "type", alert_type, 95);
    let ts = Node::Str(timestamp(g, ctx));
    push(g, "timestamp", ts, 95);
    if g.chance(70) {
        let minutes = Node::Num(g.pick(&["1", "5", "10", "0.5", "90", "1440"]).to_owned());
        push(g, "duration", minutes, 100);
    }
    if !valid || g.chance(30) {
        let seconds = Node::Num(g.pick(&["30", "60", "600", "86400"]).to_owned());
        push(g, "durationSeconds", seconds, 40);
    }
    for key in [
        "id",
        "source",
        "severity",
        "title",
        "instructions",
        "category",
    ] {
        let value = if key == "id" && g.chance(30) {
            Node::Num(g.pick(NUMBERS).to_owned())
        } else {
            Node::Str(string(g))
        };
        push(g, key, value, 15);
    }
    if g.chance(10) {
        fields.push((string(g), json_leaf(g, ctx)));
    }
    if g.chance(5) && !fields.is_empty() {
        // A repeated key: serde_json refuses duplicates in structs.
        let i = g.below(fields.len());
        let again = fields[i].clone();
        fields.push(again);
    }
    // Field order must not matter.
    if g.chance(30) {
        for i in (1..fields.len()).rev() {
            let j = g.below(i + 1);
            fields.swap(i, j);
        }
    }
    Node::Obj(fields)
}

/// Replaces, removes, nests or repeats a few nodes of `node`.
pub fn mutate_json(g: &mut Gen, ctx: &Context, node: &mut Node) {
    for _ in 0..g.range(1, 3) {
        let n = g.below(node.count());
        let Some(target) = node.nth_mut(n) else {
            continue;
        };
        match g.below(8) {
            0..=2 => *target = json_leaf(g, ctx),
            3 => *target = Node::Arr(vec![target.clone()]),
            4 => {
                if let Node::Obj(fields) = target
                    && !fields.is_empty()
                {
                    let i = g.below(fields.len());
                    fields.remove(i);
                }
            }
            5 => {
                if let Node::Obj(fields) = target {
                    let key = g.pick(&[
                        "location",
                        "locations",
                        "type",
                        "timestamp",
                        "duration",
                        "durationSeconds",
                        "id",
                        "source",
                    ]);
                    fields.push((key.to_owned(), json_leaf(g, ctx)));
                }
            }
            6 => {
                if let Node::Arr(items) = target
                    && !items.is_empty()
                {
                    let i = g.below(items.len());
                    let copies = g.count(8);
                    let item = items[i].clone();
                    items.extend(std::iter::repeat_n(item, copies));
                }
            }
            _ => {
                let depth = g.pick(&[2usize, 64, 127, 128, 129, 5000]);
                let (open, close) = if g.chance(50) {
                    ("[", "]")
                } else {
                    ("{\"a\":", "}")
                };
                *target = Node::Raw(format!("{}1{}", open.repeat(depth), close.repeat(depth)));
            }
        }
    }
}

/// Byte-level mutations: flips, inserts of dictionary tokens, deletions, repeats,
/// truncation, splices from another seed.
pub fn mutate_bytes(g: &mut Gen, data: &mut Vec<u8>, tokens: &[&str], other: &[u8]) {
    for _ in 0..g.range(1, 4) {
        let len = data.len();
        match g.below(8) {
            0 if len > 0 => {
                let i = g.below(len);
                data[i] ^= 1 << g.below(8);
            }
            1 if len > 0 => {
                let i = g.below(len);
                data[i] = g.u64() as u8;
            }
            2 => {
                let i = g.below(len + 1);
                let token = g.pick(tokens).as_bytes().to_vec();
                data.splice(i..i, token);
            }
            3 if len > 0 => {
                let i = g.below(len);
                let j = (i + g.range(1, 32)).min(len);
                data.drain(i..j);
            }
            4 if len > 0 => {
                let i = g.below(len);
                let j = (i + g.range(1, 64)).min(len);
                let chunk = data[i..j].to_vec();
                let at = g.below(len + 1);
                for _ in 0..g.range(1, 4) {
                    data.splice(at..at, chunk.iter().copied());
                }
            }
            5 if len > 0 => data.truncate(g.below(len)),
            6 if !other.is_empty() => {
                let i = g.below(len + 1);
                let j = g.below(other.len());
                let k = (j + g.range(1, 128)).min(other.len());
                data.splice(i..i, other[j..k].iter().copied());
            }
            _ => {
                let i = g.below(len + 1);
                let n = g.range(1, 8);
                let junk = g.bytes(n);
                data.splice(i..i, junk);
            }
        }
    }
}

/// Percent-encodes some bytes of `text`, leaves others raw (so `,`, `&`, `%`, spaces
/// and UTF-8 reach the query parser both ways); never a byte hyper would refuse in a
/// request target's text, except when `raw` is asked for.
pub fn query_value(g: &mut Gen, text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        let safe = byte.is_ascii_alphanumeric() || b"-._~,:".contains(&byte);
        if safe && !g.chance(5) {
            out.push(byte as char);
        } else if byte == b' ' && g.chance(50) {
            out.push('+');
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if g.chance(3) {
        out.push_str(g.pick(&[
            "%", "%Z", "%zz", "%F0%9F", "%C3", "%FF", "&", "=", "&&=", "%00",
        ]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Target;

    fn context() -> Context {
        Context {
            now: "2026-11-22T10:00:00Z".parse().unwrap(),
            epoch: Some("e1".into()),
            offsets: vec!["1700000000000-0".into()],
            api_key: "k".into(),
            corpus: crate::corpus::Corpus::load(&crate::corpus::default_dir()).unwrap(),
        }
    }

    #[test]
    fn a_case_is_a_function_of_seed_target_and_index() {
        let ctx = context();
        for target in Target::ALL {
            let case = |seed, index| {
                let mut g = Gen::for_case(seed, target.name(), index);
                serde_json::to_string(&target.generate(&mut g, &ctx)).unwrap()
            };
            for index in 0..50 {
                assert_eq!(case(7, index), case(7, index), "{target:?} {index}");
            }
            let distinct: std::collections::HashSet<String> = (0..50).map(|i| case(7, i)).collect();
            assert!(
                distinct.len() > 25,
                "{target:?}: {} distinct of 50",
                distinct.len()
            );
        }
    }

    #[test]
    fn generated_bodies_stay_within_the_body_limit() {
        let ctx = context();
        for index in 0..2000 {
            let mut g = Gen::for_case(1, "limit", index);
            assert!(
                crate::targets::parse::cap_body(&mut g, &ctx).len()
                    <= crate::targets::parse::MAX_BODY
            );
            assert!(
                crate::targets::parse::json_body(&mut g, &ctx).len()
                    <= crate::targets::parse::MAX_BODY
            );
        }
    }
}
