//! A read-mostly table from label values to label-resolved metric handles, so that the hot
//! path never calls `with_label_values` (which builds a label key, hashes it with SipHash and
//! takes the vector's lock) once a series exists.
//!
//! Entries are created on first sight and never removed: label values come from cadence
//! definitions (PROM-3), so the table is as large as the set of (cadence, note) pairs. Keys are
//! hashed with a small multiply hash (the keys are names from code, not attacker input) and
//! confirmed by comparing the label values, which are stored inline in the table's slot when
//! short: a lookup touches the slot and nothing behind a pointer, which matters once the
//! table outgrows the CPU's caches.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{PoisonError, RwLock};

/// Label values → entry; see the module docs.
pub(crate) struct Table<T> {
    map: RwLock<Map<T>>,
}

struct Map<T> {
    /// By hash of the label values.
    slots: HashMap<u64, Slot<T>, BuildHasherDefault<Prehashed>>,
    /// Entries whose hash a different key already holds in `slots` (practically never).
    collided: Vec<Slot<T>>,
}

struct Slot<T> {
    key: Key,
    entry: T,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            map: RwLock::new(Map {
                slots: HashMap::default(),
                collided: Vec::new(),
            }),
        }
    }
}

impl<T> Map<T> {
    #[inline]
    fn get(&self, hash: u64, labels: &[&str]) -> Option<&T> {
        match self.slots.get(&hash) {
            Some(slot) if slot.key.is(labels) => Some(&slot.entry),
            Some(_) => self.get_collided(labels),
            None => None,
        }
    }

    #[cold]
    fn get_collided(&self, labels: &[&str]) -> Option<&T> {
        self.collided
            .iter()
            .find(|s| s.key.is(labels))
            .map(|s| &s.entry)
    }
}

impl<T> Table<T> {
    /// Calls `f` with the entry for `labels`, creating it with `make` on first sight.
    ///
    /// The hit path is one read lock, one hash and one comparison of the label values; `f`
    /// runs under the lock, so it must be short (it records one observation).
    #[inline]
    pub(crate) fn with<R>(
        &self,
        labels: &[&str],
        make: impl FnOnce() -> T,
        f: impl FnOnce(&T) -> R,
    ) -> R {
        let hash = hash_labels(labels);
        {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = map.get(hash, labels) {
                return f(entry);
            }
        }
        self.insert(hash, labels, make, f)
    }

    /// The miss path: once per entry.
    #[cold]
    #[inline(never)]
    fn insert<R>(
        &self,
        hash: u64,
        labels: &[&str],
        make: impl FnOnce() -> T,
        f: impl FnOnce(&T) -> R,
    ) -> R {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.get(hash, labels).is_none() {
            // (else another thread inserted it meanwhile)
            let slot = Slot {
                key: Key::new(labels),
                entry: make(),
            };
            let map = &mut *map;
            match map.slots.entry(hash) {
                Entry::Occupied(_) => map.collided.push(slot),
                Entry::Vacant(v) => {
                    v.insert(slot);
                }
            }
        }
        f(map.get(hash, labels).expect("just inserted"))
    }

    /// How many entries the table holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.slots.len() + map.collided.len()
    }
}

/// Bytes of label values a [`Key`] holds without allocating.
const INLINE: usize = 46;

/// Label values, each followed by `0xff` (a byte no UTF-8 text contains): inline up to
/// [`INLINE`] bytes, else on the heap.
enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Key {
    fn new(labels: &[&str]) -> Self {
        let mut joined = Vec::new();
        for label in labels {
            joined.extend_from_slice(label.as_bytes());
            joined.push(0xff);
        }
        if joined.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..joined.len()].copy_from_slice(&joined);
            Key::Inline {
                len: joined.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(joined.into_boxed_slice())
        }
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Heap(bytes) => bytes,
        }
    }

    /// Whether this is the key of `labels`.
    #[inline]
    fn is(&self, labels: &[&str]) -> bool {
        let mut rest = self.bytes();
        for label in labels {
            let label = label.as_bytes();
            match rest.split_at_checked(label.len()) {
                Some((head, [0xff, tail @ ..])) if same_bytes(head, label) => rest = tail,
                _ => return false,
            }
        }
        rest.is_empty()
    }
}

/// `a == b` for slices of equal length, word by word: label values are short, and this
/// keeps the comparison inline instead of calling `memcmp`.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let full = |c: &[u8]| u64::from_le_bytes(c.try_into().expect("8-byte chunk"));
    let tail = |c: &[u8]| c.iter().fold(0_u64, |w, &x| (w << 8) | u64::from(x));
    let (mut a8, mut b8) = (a.chunks_exact(8), b.chunks_exact(8));
    a.len() == b.len()
        && a8
            .by_ref()
            .zip(b8.by_ref())
            .all(|(x, y)| full(x) == full(y))
        && tail(a8.remainder()) == tail(b8.remainder())
}

/// Hashes label values with a word-at-a-time multiply hash (the FxHash step). The last
/// word of each label carries a `0xff` marker above its bytes, so that label boundaries count.
#[inline]
fn hash_labels(labels: &[&str]) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let mut h: u64 = 0;
    let mut add = |w: u64| h = (h ^ w).wrapping_mul(K);
    for label in labels {
        let mut chunks = label.as_bytes().chunks_exact(8);
        for c in &mut chunks {
            add(u64::from_le_bytes(c.try_into().expect("8-byte chunk")));
        }
        // Byte by byte: a variable-length copy into a buffer stalls the load that follows.
        let last = chunks
            .remainder()
            .iter()
            .fold(0xff_u64, |w, &b| (w << 8) | u64::from(b));
        add(last);
    }
    // The multiply leaves the low bits weak; the map indexes buckets by them.
    h.rotate_left(26)
}

/// The map's hasher: keys are already hashes.
#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; this is the fallback for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, h: u64) {
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_boundaries_matter() {
        assert_ne!(hash_labels(&["ab", "c"]), hash_labels(&["a", "bc"]));
        assert_ne!(hash_labels(&["abcdefgh", ""]), hash_labels(&["abcdefgh"]));
        assert_ne!(hash_labels(&["abcdefghi"]), hash_labels(&["abcdefgh", "i"]));
        assert_ne!(hash_labels(&["a\0"]), hash_labels(&["a"]));
        assert_eq!(hash_labels(&["x", "y/z"]), hash_labels(&["x", "y/z"]));
    }

    #[test]
    fn byte_comparison() {
        for (a, b) in [
            ("", ""),
            ("abc", "abc"),
            ("abcdefgh", "abcdefgh"),
            ("abcdefghij", "abcdefghij"),
        ] {
            assert!(same_bytes(a.as_bytes(), b.as_bytes()), "{a} {b}");
        }
        for (a, b) in [
            ("abc", "abd"),
            ("abcdefgh", "abcdefgx"),
            ("abcdefghij", "abcdefghix"),
            ("xbcdefghij", "abcdefghij"),
            ("ab", "abc"),
        ] {
            assert!(!same_bytes(a.as_bytes(), b.as_bytes()), "{a} {b}");
        }
    }

    #[test]
    fn keys_compare_label_by_label() {
        let short = Key::new(&["checkout", "pay/charge"]);
        assert!(matches!(short, Key::Inline { .. }));
        assert!(short.is(&["checkout", "pay/charge"]));
        assert!(!short.is(&["checkout", "pay/charg"]));
        assert!(!short.is(&["checkou", "tpay/charge"]));
        assert!(!short.is(&["checkout"]));
        assert!(!short.is(&["checkout", "pay/charge", ""]));
        let long_note = "a-note-path/that-is/longer-than/the-inline-buffer";
        let long = Key::new(&["c", long_note]);
        assert!(matches!(long, Key::Heap(_)));
        assert!(long.is(&["c", long_note]));
        assert!(!long.is(&["c", &long_note[1..]]));
        assert!(Key::new(&["", ""]).is(&["", ""]));
        assert!(!Key::new(&["", ""]).is(&[""]));
    }

    #[test]
    fn creates_once_and_finds_again() {
        let t: Table<String> = Table::default();
        let mut made = 0;
        for _ in 0..3 {
            let got = t.with(
                &["checkout", "pay/charge"],
                || {
                    made += 1;
                    "checkout|pay/charge".to_owned()
                },
                Clone::clone,
            );
            assert_eq!(got, "checkout|pay/charge");
        }
        assert_eq!(made, 1);
        t.with(&["checkout", "pay"], || "other".to_owned(), |_| ());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn colliding_hashes_are_told_apart() {
        let t: Table<&str> = Table::default();
        let h = hash_labels(&["a"]);
        // A different key holding the hash of ["a"]: lookups compare the label values.
        t.map.write().unwrap().slots.insert(
            h,
            Slot {
                key: Key::new(&["other"]),
                entry: "other",
            },
        );
        assert_eq!(t.with(&["a"], || "a", |e| *e), "a");
        assert_eq!(t.with(&["a"], || unreachable!(), |e| *e), "a");
        assert_eq!(t.len(), 2);
    }
}
