//! The key layout (REDIS-2).
//!
//! - per run: `<prefix>:{<cadence>:<run id>}:record`, `…:lease`, `…:fence` — one hash tag, so
//!   one cluster slot, so the Lua scripts may touch all three;
//! - per cadence: `<prefix>:index:<cadence>`, a sorted set of run ids scored by the time of
//!   their last save (milliseconds since the Unix epoch), and one more member,
//!   [`INDEX_ANCHOR`], that is not a run;
//! - events: `<prefix>:events` (a stream);
//! - circuit breakers: `<prefix>:circuit:{<name>}` (a hash).
//!
//! Names are escaped so that different (cadence, run id) pairs never share a key and a name
//! cannot end the hash tag early: `%`, `:`, `{`, `}` and control characters become `%XX`
//! (uppercase hex of each UTF-8 byte); everything else, non-ASCII included, is kept, so
//! keys stay readable in `redis-cli`.

use std::borrow::Cow;
use std::fmt::Write as _;

/// A member of every index that is not a run: it keeps the sorted set in Redis's skiplist
/// encoding, so that adding, moving and removing a run's entry costs O(log n) whatever the
/// number of runs in flight.
///
/// Redis keeps a small sorted set (up to `zset-max-listpack-entries`, 128 by default) as one
/// flat list, in which every `ZADD` and `ZREM` scans the members one by one, parsing each
/// score from text: with 64 runs in flight that was about an eighth of the server's work per
/// checkpoint save (the anchor took its instructions per commit from 36.7k to 33.6k). A
/// member longer than `zset-max-listpack-value` (64 bytes by default) makes Redis use the
/// skiplist instead, whatever the size; every index update adds this one (with the score
/// `-inf`, so it sorts first), so an index is a skiplist from its first entry on. The cost
/// is memory: a few dozen bytes more per run in flight.
///
/// It contains a non-ASCII character, so no run id (printable ASCII, RUN-2) is ever equal to
/// it; [`RedisStore::list`](crate::RedisStore) skips it, and so should anything else that
/// reads an index (`ZRANGE <index> 1 -1` leaves it out: it is always first).
///
/// ```
/// assert!(cadence_redis::INDEX_ANCHOR.len() > 64);
/// assert!(!cadence_redis::INDEX_ANCHOR.is_ascii());
/// ```
pub const INDEX_ANCHOR: &str =
    "¶ cadence-redis: keeps this index a skiplist (O(log n) updates); not a run";

/// Key builder for one prefix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keys<'a> {
    prefix: &'a str,
}

/// The three keys of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunKeys {
    pub(crate) record: String,
    pub(crate) lease: String,
    pub(crate) fence: String,
}

/// What every key of one run starts with, `<prefix>:{<cadence>:<run id>}:` (escaped), and where
/// the escaped cadence sits in it: each key of the run, and its cadence's index key, is written
/// from it — straight into a command on the hot paths (one string per operation instead of
/// one per key), or as a string of its own elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stem {
    text: String,
    /// The lengths of the prefix and of the escaped cadence.
    prefix: usize,
    cadence: usize,
}

/// A key of a run, or of its cadence, as written from a [`Stem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Record,
    Lease,
    Fence,
    /// The cadence's index.
    Index,
}

impl Stem {
    /// The stem itself (distinct for every distinct (prefix, cadence, run id)).
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The pieces of a key, in order.
    fn pieces(&self, part: Part) -> [&str; 3] {
        match part {
            Part::Record => [&self.text, "record", ""],
            Part::Lease => [&self.text, "lease", ""],
            Part::Fence => [&self.text, "fence", ""],
            Part::Index => {
                let cadence = self.prefix + 2;
                [
                    &self.text[..self.prefix],
                    ":index:",
                    &self.text[cadence..cadence + self.cadence],
                ]
            }
        }
    }

    /// A key as a string of its own.
    pub(crate) fn key(&self, part: Part) -> String {
        self.pieces(part).concat()
    }

    /// Writes a key as the next argument of a command.
    pub(crate) fn write(&self, out: &mut impl redis::RedisWrite, part: Part) {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        for piece in self.pieces(part) {
            // Writing into a command's buffer cannot fail.
            let _ = arg.write_all(piece.as_bytes());
        }
    }

    /// The run's three keys as strings.
    pub(crate) fn run_keys(&self) -> RunKeys {
        RunKeys {
            record: self.key(Part::Record),
            lease: self.key(Part::Lease),
            fence: self.key(Part::Fence),
        }
    }
}

impl<'a> Keys<'a> {
    pub(crate) fn new(prefix: &'a str) -> Self {
        Keys { prefix }
    }

    /// The stem of (cadence, run id).
    pub(crate) fn stem(&self, cadence: &str, run_id: &str) -> Stem {
        self.stem_escaped(&escape(cadence), &escape(run_id))
    }

    /// The stem of a run whose cadence and run id are already escaped.
    pub(crate) fn stem_escaped(&self, cadence: &str, run_id: &str) -> Stem {
        let mut text = String::with_capacity(self.prefix.len() + cadence.len() + run_id.len() + 5);
        text.push_str(self.prefix);
        text.push_str(":{");
        text.push_str(cadence);
        text.push(':');
        text.push_str(run_id);
        text.push_str("}:");
        Stem {
            text,
            prefix: self.prefix.len(),
            cadence: cadence.len(),
        }
    }

    /// The keys of (cadence, run id).
    pub(crate) fn run(&self, cadence: &str, run_id: &str) -> RunKeys {
        self.stem(cadence, run_id).run_keys()
    }

    /// The index of one cadence.
    pub(crate) fn index(&self, cadence: &str) -> String {
        let cadence = escape(cadence);
        let mut k = String::with_capacity(self.prefix.len() + cadence.len() + 7);
        k.push_str(self.prefix);
        k.push_str(":index:");
        k.push_str(&cadence);
        k
    }

    /// A `SCAN MATCH` pattern for every index, and the length of the part before the
    /// escaped cadence name.
    pub(crate) fn index_pattern(&self) -> (String, usize) {
        let head = format!("{}:index:", self.prefix);
        let mut pattern = String::with_capacity(head.len() + 1);
        for c in head.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        (pattern, head.len())
    }

    /// The event stream.
    pub(crate) fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// The hash of one circuit breaker.
    pub(crate) fn circuit(&self, name: &str) -> String {
        format!("{}:circuit:{{{}}}", self.prefix, escape(name))
    }
}

/// The bytes kept as they are for sure: printable ASCII but `%`, `:`, `{` and `}`.
static PLAIN: [bool; 256] = {
    let mut plain = [false; 256];
    let mut b = 0x20;
    while b < 0x7F {
        plain[b] = !matches!(b as u8, b'%' | b':' | b'{' | b'}');
        b += 1;
    }
    plain
};

/// Escapes `%`, `:`, `{`, `}` and control characters as `%XX`.
pub(crate) fn escape(name: &str) -> Cow<'_, str> {
    let special = |c: char| matches!(c, '%' | ':' | '{' | '}') || c.is_control();
    // Fast path (hot: every save): printable ASCII needs no escape unless one of the four.
    if name.as_bytes().iter().all(|&b| PLAIN[usize::from(b)]) || !name.contains(special) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    let mut buf = [0u8; 4];
    for c in name.chars() {
        if special(c) {
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stem_writes_every_key_of_its_run_and_its_cadences_index() {
        let keys = Keys::new("p:x");
        for (cadence, run) in [("checkout", "order-1"), ("a:b", "{x}"), ("", "")] {
            let stem = keys.stem(cadence, run);
            let run_keys = keys.run(cadence, run);
            assert_eq!(stem.key(Part::Record), run_keys.record);
            assert_eq!(stem.key(Part::Lease), run_keys.lease);
            assert_eq!(stem.key(Part::Fence), run_keys.fence);
            assert_eq!(stem.key(Part::Index), keys.index(cadence));
            let mut cmd = redis::cmd("X");
            for part in [Part::Record, Part::Lease, Part::Fence, Part::Index] {
                stem.write(&mut cmd, part);
            }
            let written: Vec<String> = cmd
                .args_iter()
                .skip(1)
                .map(|a| match a {
                    redis::Arg::Simple(b) => String::from_utf8(b.to_vec()).unwrap(),
                    _ => unreachable!("keys are simple arguments"),
                })
                .collect();
            let expected =
                [Part::Record, Part::Lease, Part::Fence, Part::Index].map(|p| stem.key(p));
            assert_eq!(written, expected);
        }
    }

    #[test]
    fn run_keys_share_one_hash_tag() {
        let k = Keys::new("cadence").run("checkout", "order-1");
        assert_eq!(k.record, "cadence:{checkout:order-1}:record");
        assert_eq!(k.lease, "cadence:{checkout:order-1}:lease");
        assert_eq!(k.fence, "cadence:{checkout:order-1}:fence");
        assert_eq!(Keys::new("p").index("checkout"), "p:index:checkout");
        assert_eq!(Keys::new("p").events(), "p:events");
        assert_eq!(Keys::new("p").circuit("bank"), "p:circuit:{bank}");
    }

    #[test]
    fn escaping_keeps_pairs_apart_and_the_tag_closed() {
        let keys = Keys::new("c");
        assert_ne!(keys.run("a:b", "c").record, keys.run("a", "b:c").record);
        assert_eq!(keys.run("a}b", "{x}").record, "c:{a%7Db:%7Bx%7D}:record");
        assert_eq!(escape("50%\n"), "50%25%0A");
        assert_eq!(escape("café ☕"), "café ☕");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_index_pattern_escapes_glob_characters() {
        assert_eq!(
            Keys::new("a*[b]").index_pattern(),
            ("a\\*\\[b\\]:index:*".to_owned(), 12)
        );
    }
}
