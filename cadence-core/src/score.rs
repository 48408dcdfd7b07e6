//! Scores that parallel groups can merge: the [`Score`] trait (derived with
//! `#[derive(Score)]`), [`Shared<T>`], [`MergeStrategy`] and the per-class merge rules
//! (PAR-1…12).
//!
//! A `.sync` group runs each member on its own clone of the score; afterwards the engine asks,
//! field by field, which members *changed* the field (its final value differs from the
//! pre-group value, PAR-7) and merges those changes into the live score in declaration order
//! with the group's [`MergeStrategy`]. The merge is atomic: on a conflict the live score is
//! left exactly as it was before the group (PAR-12).
//!
//! ```
//! use cadence_core::score::FieldClass;
//! use cadence_core::{Score, Shared};
//!
//! #[derive(Clone, Score)]
//! struct Enriched {
//!     profile: Option<String>,           // a value
//!     tags: Vec<String>,                 // a sequence
//!     #[score(skip)]
//!     scratch: u64,                      // not merged
//!     log: Shared<Vec<String>>,          // shared on purpose, skipped automatically
//! }
//!
//! assert_eq!(
//!     Enriched::FIELDS.iter().map(|f| (f.name, f.class)).collect::<Vec<_>>(),
//!     [("profile", FieldClass::Value), ("tags", FieldClass::Sequence)],
//! );
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::MergeConflict;

/// How a field merges under [`MergeStrategy::SmartMerge`] (PAR-2).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldClass {
    /// Replaced as a whole; two different new values conflict.
    Value,
    /// Members' appended elements are concatenated in declaration order.
    Sequence,
    /// Merged key by key.
    Map,
    /// Union of additions; a removal conflicts.
    Set,
}

impl FieldClass {
    /// `value`, `sequence`, `map` or `set`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldClass::Value => "value",
            FieldClass::Sequence => "sequence",
            FieldClass::Map => "map",
            FieldClass::Set => "set",
        }
    }
}

/// One mergeable field of a [`Score`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Field {
    /// The field's name.
    pub name: &'static str,
    /// Its merge class.
    pub class: FieldClass,
}

impl Field {
    /// A field description (used by the derive).
    pub const fn new(name: &'static str, class: FieldClass) -> Self {
        Field { name, class }
    }
}

/// A state type whose fields parallel groups can compare and merge (PAR-1). Derive it with
/// `#[derive(Score)]` on a struct with named fields; implement it by hand only for unusual
/// layouts.
///
/// Field indexes are positions in [`FIELDS`](Self::FIELDS) (skipped fields are absent).
pub trait Score: Clone + Send + 'static {
    /// The fields taking part in change detection and merging, in declaration order.
    const FIELDS: &'static [Field];

    /// Whether field `index` of `self` equals that of `other` (`PartialEq`).
    fn field_eq(&self, other: &Self, index: usize) -> bool;

    /// Moves field `index` from `from` into `self` (`from` is left with `self`'s old value).
    fn take_field(&mut self, from: &mut Self, index: usize);

    /// [`SmartMerge`](MergeStrategy::SmartMerge) of a sequence, map or set field: merges the
    /// changes `results` made relative to `snapshot` into `self` (which holds the snapshot's
    /// value). Returns the indexes (into `results`) of the members in conflict.
    fn smart_merge_field(
        &mut self,
        index: usize,
        snapshot: &Self,
        results: &[&Self],
    ) -> Result<(), Vec<usize>>;
}

/// State that all members of a parallel group share on purpose (PAR-3): an `Arc<Mutex<T>>`
/// whose clones share one value. `#[derive(Score)]` skips it automatically; it serializes as
/// its content.
///
/// ```
/// use cadence_core::Shared;
/// let log = Shared::new(Vec::<String>::new());
/// let clone = log.clone();
/// clone.lock().push("seen by both".into());
/// assert_eq!(log.lock().len(), 1);
/// ```
pub struct Shared<T>(Arc<Mutex<T>>);

impl<T> Shared<T> {
    /// Shares `value`.
    pub fn new(value: T) -> Self {
        Shared(Arc::new(Mutex::new(value)))
    }

    /// Locks the value. A panic while it was locked does not poison it for others.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether two handles share one value.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T: Default> Default for Shared<T> {
    fn default() -> Self {
        Shared::new(T::default())
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Shared").field(&*self.lock()).finish()
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other) || *self.lock() == *other.lock()
    }
}

impl<T: serde::Serialize> serde::Serialize for Shared<T> {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        self.lock().serialize(s)
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Shared<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Shared::new)
    }
}

type CustomMerge<S> =
    Arc<dyn Fn(&mut S, &S, &[&S]) -> Result<(), MergeConflict> + Send + Sync + 'static>;

/// How a parallel group's results are merged into the live score (PAR-8…11).
#[non_exhaustive]
pub enum MergeStrategy<S> {
    /// Each changed field takes its new value; two members changing one field to different
    /// values is a [`MergeConflict`] (the default, PAR-8).
    FailOnConflict,
    /// Changed fields are applied in declaration order; later members win (PAR-9).
    LastWriteWins,
    /// Sequences concatenate appends, maps merge by key, sets take the union; values as
    /// `FailOnConflict` (PAR-10).
    SmartMerge,
    /// `f(&mut live, &snapshot, &results_in_declaration_order)` decides everything (PAR-11).
    Custom(CustomMerge<S>),
}

impl<S> MergeStrategy<S> {
    /// A custom merge function.
    pub fn custom(
        f: impl Fn(&mut S, &S, &[&S]) -> Result<(), MergeConflict> + Send + Sync + 'static,
    ) -> Self {
        MergeStrategy::Custom(Arc::new(f))
    }

    /// `fail_on_conflict`, `last_write_wins`, `smart_merge` or `custom`.
    pub fn as_str(&self) -> &'static str {
        match self {
            MergeStrategy::FailOnConflict => "fail_on_conflict",
            MergeStrategy::LastWriteWins => "last_write_wins",
            MergeStrategy::SmartMerge => "smart_merge",
            MergeStrategy::Custom(_) => "custom",
        }
    }
}

impl<S> Default for MergeStrategy<S> {
    // Not derived: a derive would require `S: Default`.
    #[allow(clippy::derivable_impls)]
    fn default() -> Self {
        MergeStrategy::FailOnConflict
    }
}

impl<S> Clone for MergeStrategy<S> {
    fn clone(&self) -> Self {
        match self {
            MergeStrategy::FailOnConflict => MergeStrategy::FailOnConflict,
            MergeStrategy::LastWriteWins => MergeStrategy::LastWriteWins,
            MergeStrategy::SmartMerge => MergeStrategy::SmartMerge,
            MergeStrategy::Custom(f) => MergeStrategy::Custom(f.clone()),
        }
    }
}

impl<S> fmt::Debug for MergeStrategy<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Merges `results` (declaration order, named by `names`) into `live`, which holds the
/// pre-group score. Atomic: `live` is untouched on a conflict (PAR-12).
pub(crate) fn merge<S: Score>(
    strategy: &MergeStrategy<S>,
    live: &mut S,
    mut results: Vec<S>,
    names: &[&str],
) -> Result<(), MergeConflict> {
    let conflict = |field: &str, members: Vec<usize>| {
        MergeConflict::new(
            field,
            members.iter().map(|&j| names[j].to_owned()).collect(),
        )
    };
    if let MergeStrategy::Custom(f) = strategy {
        let snapshot = live.clone();
        let mut scratch = live.clone();
        let refs: Vec<&S> = results.iter().collect();
        f(&mut scratch, &snapshot, &refs)?;
        *live = scratch;
        return Ok(());
    }
    // Plan every field first, so a conflict leaves `live` untouched.
    enum Plan {
        Keep,
        Take(usize),
        Smart(Vec<usize>),
    }
    let mut plans = Vec::with_capacity(S::FIELDS.len());
    let mut any_smart = false;
    for (i, field) in S::FIELDS.iter().enumerate() {
        let changed: Vec<usize> = (0..results.len())
            .filter(|&j| !results[j].field_eq(live, i))
            .collect();
        let plan = match (changed.first(), changed.last()) {
            (None, _) | (_, None) => Plan::Keep,
            (Some(&first), Some(&last)) => match strategy {
                MergeStrategy::LastWriteWins => Plan::Take(last),
                MergeStrategy::SmartMerge if field.class != FieldClass::Value => {
                    any_smart = true;
                    Plan::Smart(changed)
                }
                _ => {
                    if changed
                        .iter()
                        .any(|&j| !results[j].field_eq(&results[first], i))
                    {
                        return Err(conflict(field.name, changed));
                    }
                    Plan::Take(first)
                }
            },
        };
        plans.push(plan);
    }
    if any_smart {
        // Smart fields may still conflict: merge into a scratch copy, adopt it only if clean.
        let mut scratch = live.clone();
        {
            let refs: Vec<&S> = results.iter().collect();
            for (i, plan) in plans.iter().enumerate() {
                if let Plan::Smart(changed) = plan {
                    // PAR-12: a conflict names every member that changed the field.
                    scratch
                        .smart_merge_field(i, live, &refs)
                        .map_err(|_| conflict(S::FIELDS[i].name, changed.clone()))?;
                }
            }
        }
        for (i, plan) in plans.iter().enumerate() {
            if let Plan::Take(j) = plan {
                scratch.take_field(&mut results[*j], i);
            }
        }
        *live = scratch;
    } else {
        for (i, plan) in plans.iter().enumerate() {
            if let Plan::Take(j) = plan {
                live.take_field(&mut results[*j], i);
            }
        }
    }
    Ok(())
}

/// A sequence field for [`MergeStrategy::SmartMerge`]: `Vec<T>`, `VecDeque<T>`, or your own.
pub trait SequenceMerge {
    /// Merges: each result that starts with the snapshot's elements contributed the elements
    /// after them; `self` (the snapshot's value) gets every contribution in declaration order.
    /// A result that removed, reordered or changed snapshot elements is a conflict.
    fn smart_merge(&mut self, snapshot: &Self, results: &[&Self]) -> Result<(), Vec<usize>>;
}

impl<T: Clone + PartialEq> SequenceMerge for Vec<T> {
    fn smart_merge(&mut self, snapshot: &Self, results: &[&Self]) -> Result<(), Vec<usize>> {
        let bad: Vec<usize> = (0..results.len())
            .filter(|&j| !results[j].starts_with(snapshot))
            .collect();
        if !bad.is_empty() {
            return Err(changers(snapshot, results));
        }
        for r in results {
            self.extend_from_slice(&r[snapshot.len()..]);
        }
        Ok(())
    }
}

impl<T: Clone + PartialEq> SequenceMerge for VecDeque<T> {
    fn smart_merge(&mut self, snapshot: &Self, results: &[&Self]) -> Result<(), Vec<usize>> {
        let starts = |r: &VecDeque<T>| {
            r.len() >= snapshot.len() && r.iter().zip(snapshot).all(|(a, b)| a == b)
        };
        if !results.iter().all(|r| starts(r)) {
            return Err(changers(snapshot, results));
        }
        for r in results {
            self.extend(r.iter().skip(snapshot.len()).cloned());
        }
        Ok(())
    }
}

/// Members whose value differs from the snapshot (every changer is named in a conflict).
fn changers<T: PartialEq>(snapshot: &T, results: &[&T]) -> Vec<usize> {
    (0..results.len())
        .filter(|&j| results[j] != snapshot)
        .collect()
}

/// A map field for [`MergeStrategy::SmartMerge`]: `HashMap`, `BTreeMap`, or your own.
pub trait MapMerge {
    /// Merges key by key: a key added or set by several members to different values, or set by
    /// one and removed by another, is a conflict; equal values merge; removals apply.
    fn smart_merge(&mut self, snapshot: &Self, results: &[&Self]) -> Result<(), Vec<usize>>;
}

macro_rules! map_merge {
    ($map:ident, $($bound:tt)+) => {
        impl<K: $($bound)+, V: Clone + PartialEq> MapMerge for $map<K, V> {
            fn smart_merge(&mut self, snapshot: &Self, results: &[&Self]) -> Result<(), Vec<usize>> {
                // key -> (member, new value or None for removal), first writer per key.
                let mut decided: $map<K, (usize, Option<&V>)> = $map::new();
                let mut conflicts: Vec<usize> = Vec::new();
                for (j, r) in results.iter().enumerate() {
                    let mut touched: Vec<(&K, Option<&V>)> = Vec::new();
                    for (k, v) in r.iter() {
                        if snapshot.get(k) != Some(v) {
                            touched.push((k, Some(v)));
                        }
                    }
                    for k in snapshot.keys() {
                        if !r.contains_key(k) {
                            touched.push((k, None));
                        }
                    }
                    for (k, v) in touched {
                        match decided.get(k) {
                            None => {
                                decided.insert(k.clone(), (j, v));
                            }
                            Some((first, prev)) => {
                                if *prev != v {
                                    conflicts.push(*first);
                                    conflicts.push(j);
                                }
                            }
                        }
                    }
                }
                if !conflicts.is_empty() {
                    conflicts.sort_unstable();
                    conflicts.dedup();
                    return Err(conflicts);
                }
                for (k, (_, v)) in decided {
                    match v {
                        Some(v) => {
                            self.insert(k, v.clone());
                        }
                        None => {
                            self.remove(&k);
                        }
                    }
                }
                Ok(())
            }
        }
    };
}

map_merge!(HashMap, Clone + Eq + Hash);
map_merge!(BTreeMap, Clone + Ord);

/// A set field for [`MergeStrategy::SmartMerge`]: `HashSet`, `BTreeSet`, or your own.
pub trait SetMerge {
    /// Union of the snapshot and every member's additions; a removal by any member is a
    /// conflict.
    fn smart_merge(&mut self, snapshot: &Self, results: &[&Self]) -> Result<(), Vec<usize>>;
}

macro_rules! set_merge {
    ($set:ident, $($bound:tt)+) => {
        impl<T: $($bound)+> SetMerge for $set<T> {
            fn smart_merge(&mut self, snapshot: &Self, results: &[&Self]) -> Result<(), Vec<usize>> {
                let removers: Vec<usize> = (0..results.len())
                    .filter(|&j| !snapshot.is_subset(results[j]))
                    .collect();
                if !removers.is_empty() {
                    return Err(removers);
                }
                for r in results {
                    self.extend(r.iter().cloned());
                }
                Ok(())
            }
        }
    };
}

set_merge!(HashSet, Clone + Eq + Hash);
set_merge!(BTreeSet, Clone + Ord);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_appends_in_declaration_order() {
        // PAR-10
        let snap = vec![1, 2];
        let mut live = snap.clone();
        let a = vec![1, 2, 3];
        let b = vec![1, 2, 4, 5];
        live.smart_merge(&snap, &[&a, &b]).unwrap();
        assert_eq!(live, [1, 2, 3, 4, 5]);
        let c = vec![2, 1];
        assert_eq!(live.clone().smart_merge(&snap, &[&a, &c]), Err(vec![0, 1]));
    }

    #[test]
    fn maps_merge_by_key() {
        // PAR-10
        let snap = BTreeMap::from([("a", 1), ("b", 2)]);
        let x = BTreeMap::from([("a", 1), ("b", 2), ("c", 3)]);
        let y = BTreeMap::from([("a", 9), ("b", 2), ("c", 3)]);
        let z = BTreeMap::from([("a", 1)]);
        let mut live = snap.clone();
        live.smart_merge(&snap, &[&x, &y, &z]).unwrap();
        assert_eq!(live, BTreeMap::from([("a", 9), ("c", 3)]));
        let w = BTreeMap::from([("a", 1), ("b", 2), ("c", 4)]);
        assert_eq!(snap.clone().smart_merge(&snap, &[&x, &w]), Err(vec![0, 1]));
        let set_b = BTreeMap::from([("a", 1), ("b", 7)]);
        assert_eq!(
            snap.clone().smart_merge(&snap, &[&z, &set_b]),
            Err(vec![0, 1])
        );
    }

    #[test]
    fn sets_union_and_refuse_removals() {
        // PAR-10
        let snap = HashSet::from([1]);
        let mut live = snap.clone();
        live.smart_merge(&snap, &[&HashSet::from([1, 2]), &HashSet::from([1, 3])])
            .unwrap();
        assert_eq!(live, HashSet::from([1, 2, 3]));
        assert_eq!(
            snap.clone()
                .smart_merge(&snap, &[&HashSet::from([1, 2]), &HashSet::new()]),
            Err(vec![1])
        );
    }
}
