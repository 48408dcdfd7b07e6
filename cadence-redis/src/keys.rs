//! The key layout (REDIS-2).
//!
//! - per run: `<prefix>:{<cadence>:<run id>}:record`, `…:lease`, `…:fence` — one hash tag, so
//!   one cluster slot, so the Lua scripts may touch all three;
//! - per cadence: `<prefix>:index:<cadence>`, a sorted set of run ids scored by the time of
//!   their last save (milliseconds since the Unix epoch);
//! - events: `<prefix>:events` (a stream);
//! - circuit breakers: `<prefix>:circuit:{<name>}` (a hash).
//!
//! Names are escaped so that different (cadence, run id) pairs never share a key and a name
//! cannot end the hash tag early: `%`, `:`, `{`, `}` and control characters become `%XX`
//! (uppercase hex of each UTF-8 byte); everything else, non-ASCII included, is kept, so
//! keys stay readable in `redis-cli`.

use std::borrow::Cow;
use std::fmt::Write as _;

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

impl<'a> Keys<'a> {
    pub(crate) fn new(prefix: &'a str) -> Self {
        Keys { prefix }
    }

    /// The keys of (cadence, run id).
    pub(crate) fn run(&self, cadence: &str, run_id: &str) -> RunKeys {
        self.run_escaped(&escape(cadence), &escape(run_id))
    }

    /// The keys of a run whose cadence (as found in an index key) is already escaped.
    /// The lease and record keys of a run (as [`run`](Self::run), without the fence key).
    pub(crate) fn lease_and_record(&self, cadence: &str, run_id: &str) -> (String, String) {
        let (cadence, run_id) = (escape(cadence), escape(run_id));
        let mut lease = String::with_capacity(
            self.prefix.len() + cadence.len() + run_id.len() + "record".len() + 5,
        );
        lease.push_str(self.prefix);
        lease.push_str(":{");
        lease.push_str(&cadence);
        lease.push(':');
        lease.push_str(&run_id);
        lease.push_str("}:");
        let mut record = String::with_capacity(lease.len() + "record".len());
        record.push_str(&lease);
        lease.push_str("lease");
        record.push_str("record");
        (lease, record)
    }

    pub(crate) fn run_escaped(&self, cadence: &str, run_id: &str) -> RunKeys {
        // Built by hand: formatting machinery costs more than the copies (hot: every save).
        let key = |suffix: &str| {
            let mut k = String::with_capacity(
                self.prefix.len() + cadence.len() + run_id.len() + suffix.len() + 5,
            );
            k.push_str(self.prefix);
            k.push_str(":{");
            k.push_str(cadence);
            k.push(':');
            k.push_str(run_id);
            k.push_str("}:");
            k.push_str(suffix);
            k
        };
        RunKeys {
            record: key("record"),
            lease: key("lease"),
            fence: key("fence"),
        }
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

/// Escapes `%`, `:`, `{`, `}` and control characters as `%XX`.
pub(crate) fn escape(name: &str) -> Cow<'_, str> {
    let special = |c: char| matches!(c, '%' | ':' | '{' | '}') || c.is_control();
    // Fast path (hot: every save): printable ASCII needs no escape unless one of the four.
    let plain = |b: &u8| matches!(b, 0x20..=0x7E) && !matches!(b, b'%' | b':' | b'{' | b'}');
    if name.as_bytes().iter().all(plain) || !name.contains(special) {
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
