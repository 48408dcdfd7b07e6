//! A read-mostly table from label values to label-resolved metric handles, so that the hot
//! path never calls `with_label_values` (which builds a label key, hashes it with SipHash and
//! takes the vector's lock) once a series exists.
//!
//! Entries are created on first sight and never removed: label values come from cadence
//! definitions (PROM-3), so the table is as large as the set of (cadence, note) pairs. Keys are
//! hashed with a small multiply-rotate hash (the keys are names from code, not attacker input)
//! and collisions are resolved by comparing the stored label values.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{PoisonError, RwLock};

/// What a [`Table`] stores: label-resolved handles that know their label values.
pub(crate) trait Entry {
    /// Whether this entry is the one for `labels`.
    fn is_for(&self, labels: &[&str]) -> bool;
}

/// Label values → entry; see the module docs.
pub(crate) struct Table<T> {
    map: RwLock<HashMap<u64, Vec<T>, BuildHasherDefault<Prehashed>>>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            map: RwLock::default(),
        }
    }
}

impl<T: Entry> Table<T> {
    /// Calls `f` with the entry for `labels`, creating it with `make` on first sight.
    ///
    /// The hit path is one read lock and one hash; `f` runs under the lock, so it must be
    /// short (it records one observation).
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
            if let Some(entry) = map
                .get(&hash)
                .and_then(|bucket| bucket.iter().find(|e| e.is_for(labels)))
            {
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
        let bucket = map.entry(hash).or_default();
        let i = match bucket.iter().position(|e| e.is_for(labels)) {
            Some(i) => i, // another thread inserted it meanwhile
            None => {
                bucket.push(make());
                bucket.len() - 1
            }
        };
        f(&bucket[i])
    }

    /// How many entries the table holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.values().map(Vec::len).sum()
    }
}

/// Hashes label values, each followed by a `0xff` separator (which no UTF-8 text contains),
/// with a word-at-a-time multiply-rotate hash (the FxHash step).
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
        let mut last = [0xff_u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        add(u64::from_le_bytes(last) ^ rest.len() as u64);
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
            self.0 = (self.0.rotate_left(8)) ^ u64::from(b);
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

    struct E(Vec<String>);

    impl Entry for E {
        fn is_for(&self, labels: &[&str]) -> bool {
            self.0.len() == labels.len() && self.0.iter().zip(labels).all(|(a, b)| a == b)
        }
    }

    #[test]
    fn label_boundaries_matter() {
        assert_ne!(hash_labels(&["ab", "c"]), hash_labels(&["a", "bc"]));
        assert_ne!(hash_labels(&["abcdefgh", ""]), hash_labels(&["abcdefgh"]));
        assert_ne!(hash_labels(&["abcdefghi"]), hash_labels(&["abcdefgh", "i"]));
        assert_eq!(hash_labels(&["x", "y/z"]), hash_labels(&["x", "y/z"]));
    }

    #[test]
    fn creates_once_and_finds_again() {
        let t: Table<E> = Table::default();
        let mut made = 0;
        for _ in 0..3 {
            let got = t.with(
                &["checkout", "pay/charge"],
                || {
                    made += 1;
                    E(vec!["checkout".into(), "pay/charge".into()])
                },
                |e| e.0.join("|"),
            );
            assert_eq!(got, "checkout|pay/charge");
        }
        assert_eq!(made, 1);
        t.with(
            &["checkout", "pay"],
            || E(vec!["checkout".into(), "pay".into()]),
            |_| (),
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn colliding_hashes_are_told_apart() {
        let t: Table<E> = Table::default();
        let h = hash_labels(&["a"]);
        // Two entries forced into one bucket: lookups compare the label values.
        t.map
            .write()
            .unwrap()
            .insert(h, vec![E(vec!["other".into()]), E(vec!["a".into()])]);
        assert_eq!(t.with(&["a"], || unreachable!(), |e| e.0[0].clone()), "a");
    }
}
