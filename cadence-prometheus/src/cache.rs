//! A read-mostly table from label values to label-resolved metric handles, so that the hot
//! path never calls `with_label_values` (which builds a label key, hashes it with SipHash and
//! takes the vector's lock) once a series exists.
//!
//! Two levels:
//!
//! - **Per thread** (the hot path): a small map keyed by the *addresses and lengths* of the
//!   label strings. The engine passes cadence names and note paths as borrowed views of
//!   strings that stay at one address for a cadence's lifetime, so the key costs no hashing of
//!   text. A hit is confirmed by comparing the label values with the ones the entry was made
//!   for (short, compared word by word), so a string that reuses a freed address is never
//!   taken for another. No lock, no atomic read-modify-write: runs on other threads never
//!   contend with this lookup. Each thread's map is bounded ([`LOCAL_CAPACITY`]); when full
//!   it is emptied and refills from the shared level.
//! - **Shared** (a thread's first sight of a series): label values hashed with a small
//!   multiply hash (the keys are names from code, not attacker input) behind a `RwLock`,
//!   created on first sight and never removed: label values come from cadence definitions
//!   (PROM-3), so the table is as large as the set of (cadence, note) pairs.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Label values → entry; see the module docs.
pub(crate) struct Table<T> {
    /// Distinguishes tables in the per-thread maps (never reused).
    id: usize,
    map: RwLock<Map<T>>,
}

/// Hands out [`Table::id`]s.
static NEXT_TABLE: AtomicUsize = AtomicUsize::new(0);

struct Map<T> {
    /// By hash of the label values.
    slots: HashMap<u64, Arc<Slot<T>>, BuildHasherDefault<Prehashed>>,
    /// Entries whose hash a different key already holds in `slots` (practically never).
    collided: Vec<Arc<Slot<T>>>,
}

struct Slot<T> {
    key: Key,
    entry: T,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            id: NEXT_TABLE.fetch_add(1, Ordering::Relaxed),
            map: RwLock::new(Map {
                slots: HashMap::default(),
                collided: Vec::new(),
            }),
        }
    }
}

impl<T> Map<T> {
    #[inline]
    fn get(&self, hash: u64, labels: &[&str]) -> Option<&Arc<Slot<T>>> {
        match self.slots.get(&hash) {
            Some(slot) if slot.key.is(labels) => Some(slot),
            Some(_) => self.get_collided(labels),
            None => None,
        }
    }

    #[cold]
    fn get_collided(&self, labels: &[&str]) -> Option<&Arc<Slot<T>>> {
        self.collided.iter().find(|s| s.key.is(labels))
    }
}

/// How many entries a thread's map holds before it is emptied (see the module docs).
const LOCAL_CAPACITY: usize = 4096;

/// Most label values a key has (cadence and note).
const MAX_LABELS: usize = 2;

/// A per-thread key: the table, and the address and length of each label value.
#[derive(Clone, Copy, PartialEq, Eq)]
struct LocalKey {
    table: usize,
    labels: [(usize, usize); MAX_LABELS],
}

impl LocalKey {
    #[inline]
    fn new(table: usize, labels: &[&str]) -> Option<Self> {
        if labels.len() > MAX_LABELS {
            return None;
        }
        let mut key = LocalKey {
            table,
            labels: [(0, 0); MAX_LABELS],
        };
        for (k, label) in key.labels.iter_mut().zip(labels) {
            *k = (label.as_ptr().addr(), label.len());
        }
        Some(key)
    }
}

impl Hash for LocalKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        const K: u64 = 0xf135_7aea_2e62_a9c5;
        let mut h: u64 = 0;
        let mut add = |w: usize| h = (h ^ w as u64).wrapping_mul(K);
        add(self.table);
        for &(addr, len) in &self.labels {
            add(addr);
            add(len);
        }
        state.write_u64(h.rotate_left(26));
    }
}

/// A thread's map: entries of every table, type-erased (each table knows its entry type).
type Local = HashMap<LocalKey, Arc<dyn Any + Send + Sync>, BuildHasherDefault<Prehashed>>;

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

/// A thread's entries by (table, note id): direct-mapped at `id mod len` (see
/// [`Table::with_note`]); ids of one cadence's notes are consecutive, so they do not collide
/// until the table is full.
type Keyed = Vec<Option<(usize, u64, Arc<dyn Any + Send + Sync>)>>;

/// Entries of a thread's [`Keyed`] table.
const KEYED_CAPACITY: usize = 4096;

thread_local! {
    static KEYED: RefCell<Keyed> = const { RefCell::new(Vec::new()) };
}

impl<T: Send + Sync + 'static> Table<T> {
    /// [`with`](Self::with) for labels that `note` (a [`cadence_core::NoteId`]) determines:
    /// the hit path is one indexed load and two compares, no hashing and no text comparison.
    #[inline]
    pub(crate) fn with_note<R>(
        &self,
        note: u64,
        labels: &[&str],
        make: impl FnOnce() -> T,
        f: impl FnOnce(&T) -> R,
    ) -> R {
        let mut f = Some(f);
        let hit = KEYED.try_with(|keyed| {
            if let Ok(keyed) = keyed.try_borrow()
                && let Some(Some((table, id, slot))) =
                    keyed.get(note as usize & keyed.len().wrapping_sub(1))
                && (*table, *id) == (self.id, note)
                && let Some(slot) = slot.downcast_ref::<Slot<T>>()
                && let Some(f) = f.take()
            {
                return Some(f(&slot.entry));
            }
            None
        });
        if let Ok(Some(r)) = hit {
            return r;
        }
        let f = f.expect("`f` is taken only on a hit");
        let slot = self.shared(labels, make);
        let _ = KEYED.try_with(|keyed| {
            if let Ok(mut keyed) = keyed.try_borrow_mut() {
                if keyed.is_empty() {
                    keyed.resize(KEYED_CAPACITY, None);
                }
                let i = note as usize & (keyed.len() - 1);
                keyed[i] = Some((self.id, note, slot.clone()));
            }
        });
        f(&slot.entry)
    }

    /// Calls `f` with the entry for `labels`, creating it with `make` on first sight.
    ///
    /// The hit path is a lookup in this thread's map by the labels' addresses and one
    /// comparison of the label values (see the module docs); `f` runs with this thread's map
    /// borrowed, so it must not come back here (it records one observation).
    #[inline]
    pub(crate) fn with<R>(
        &self,
        labels: &[&str],
        make: impl FnOnce() -> T,
        f: impl FnOnce(&T) -> R,
    ) -> R {
        let Some(key) = LocalKey::new(self.id, labels) else {
            return f(&self.shared(labels, make).entry);
        };
        let mut f = Some(f);
        let hit = LOCAL.try_with(|local| {
            if let Ok(local) = local.try_borrow()
                && let Some(slot) = local.get(&key)
                && let Some(slot) = slot.downcast_ref::<Slot<T>>()
                && slot.key.is(labels)
                && let Some(f) = f.take()
            {
                return Some(f(&slot.entry));
            }
            None
        });
        if let Ok(Some(r)) = hit {
            return r;
        }
        let f = f.expect("`f` is taken only on a hit");
        if hit.is_err() {
            // This thread is being torn down: the shared table alone.
            return f(&self.shared(labels, make).entry);
        }
        self.miss(key, labels, make, f)
    }

    /// A thread's first sight of `labels` (or of their current addresses).
    #[cold]
    #[inline(never)]
    fn miss<R>(
        &self,
        key: LocalKey,
        labels: &[&str],
        make: impl FnOnce() -> T,
        f: impl FnOnce(&T) -> R,
    ) -> R {
        let slot = self.shared(labels, make);
        let _ = LOCAL.try_with(|local| {
            if let Ok(mut local) = local.try_borrow_mut() {
                if local.len() >= LOCAL_CAPACITY {
                    local.clear();
                }
                local.insert(key, slot.clone());
            }
        });
        f(&slot.entry)
    }

    /// The shared table's entry for `labels`, created with `make` on first sight.
    fn shared(&self, labels: &[&str], make: impl FnOnce() -> T) -> Arc<Slot<T>> {
        let hash = hash_labels(labels);
        {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = map.get(hash, labels) {
                return slot.clone();
            }
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = map.get(hash, labels) {
            // Another thread inserted it meanwhile.
            return slot.clone();
        }
        let slot = Arc::new(Slot {
            key: Key::new(labels),
            entry: make(),
        });
        let map = &mut *map;
        match map.slots.entry(hash) {
            Entry::Occupied(_) => map.collided.push(slot.clone()),
            Entry::Vacant(v) => {
                v.insert(slot.clone());
            }
        }
        slot
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

/// `a == b`, word by word with the last word overlapping the one before: label values are
/// short, and this keeps the comparison inline and branch-light instead of calling `memcmp`.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w8 = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let w4 = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().expect("4 bytes"));
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if w8(a, i) != w8(b, i) {
                return false;
            }
            i += 8;
        }
        w8(a, n - 8) == w8(b, n - 8)
    } else if n >= 4 {
        w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4)
    } else {
        a == b
    }
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
    fn entries_by_note_id_survive_collisions_and_are_per_table() {
        let (a, b) = (Table::<String>::default(), Table::<String>::default());
        let get = |t: &Table<String>, id: u64, label: &'static str| {
            t.with_note(id, &["c", label], || label.to_owned(), |e| e.clone())
        };
        // Ids one table length apart share a slot: each lookup still finds its own entry.
        let far = 7 + KEYED_CAPACITY as u64;
        for _ in 0..3 {
            assert_eq!(get(&a, 7, "x"), "x");
            assert_eq!(get(&a, far, "y"), "y");
            assert_eq!(get(&b, 7, "z"), "z", "another table, same id");
        }
        // The shared level holds one entry per label set.
        assert_eq!((a.len(), b.len()), (2, 1));
        assert_eq!(
            a.with(&["c", "x"], || unreachable!("exists"), |e| e.clone()),
            "x"
        );
    }

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
            ("a", "a"),
            ("abc", "abc"),
            ("abcd", "abcd"),
            ("abcdefg", "abcdefg"),
            ("abcdefgh", "abcdefgh"),
            ("abcdefghij", "abcdefghij"),
            ("abcdefghijklmnopq", "abcdefghijklmnopq"),
        ] {
            assert!(same_bytes(a.as_bytes(), b.as_bytes()), "{a} {b}");
        }
        for (a, b) in [
            ("abc", "abd"),
            ("abcdefgh", "abcdefgx"),
            ("abcdefghij", "abcdefghix"),
            ("xbcdefghij", "abcdefghij"),
            ("ab", "abc"),
            ("abcde", "abxde"),
            ("abcdefghijklmnopq", "abcdefghijxlmnopq"),
            ("abcdefghijklmnopq", "abcdefghijklmnopx"),
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
    fn a_reused_address_is_not_taken_for_another_series() {
        let t: Table<String> = Table::default();
        // Same address and length, other content: the per-thread key matches, the labels
        // do not.
        let mut buf = String::from("checkout");
        let first = t.with(&[buf.as_str()], || "checkout".to_owned(), Clone::clone);
        buf.replace_range(.., "payments");
        let second = t.with(&[buf.as_str()], || "payments".to_owned(), Clone::clone);
        assert_eq!((first.as_str(), second.as_str()), ("checkout", "payments"));
        // Other addresses, same content: the same entry.
        let copy = String::from("checkout");
        t.with(
            &[copy.as_str()],
            || unreachable!(),
            |e| assert_eq!(e, "checkout"),
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn threads_share_entries() {
        let t: Arc<Table<std::sync::atomic::AtomicU64>> = Arc::default();
        let bump = |t: &Table<std::sync::atomic::AtomicU64>| {
            t.with(&["c", "n"], Default::default, |n| {
                n.fetch_add(1, Ordering::Relaxed);
            })
        };
        bump(&t);
        let t2 = t.clone();
        std::thread::spawn(move || bump(&t2)).join().unwrap();
        bump(&t);
        assert_eq!(
            t.with(
                &["c", "n"],
                || unreachable!(),
                |n| n.load(Ordering::Relaxed)
            ),
            3
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn many_labels_go_to_the_shared_table() {
        let t: Table<u8> = Table::default();
        assert_eq!(t.with(&["a", "b", "c"], || 7, |e| *e), 7);
        assert_eq!(t.with(&["a", "b", "c"], || unreachable!(), |e| *e), 7);
    }

    #[test]
    fn colliding_hashes_are_told_apart() {
        let t: Table<&str> = Table::default();
        let h = hash_labels(&["a"]);
        // A different key holding the hash of ["a"]: lookups compare the label values.
        t.map.write().unwrap().slots.insert(
            h,
            Arc::new(Slot {
                key: Key::new(&["other"]),
                entry: "other",
            }),
        );
        assert_eq!(t.with(&["a"], || "a", |e| *e), "a");
        assert_eq!(t.with(&["a"], || unreachable!(), |e| *e), "a");
        assert_eq!(t.len(), 2);
    }
}
