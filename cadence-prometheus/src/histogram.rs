//! `cadence_note_duration_seconds`: a histogram family of its own, because it is observed on
//! every note attempt, on the note's path (HOOK-2).
//!
//! `prometheus::Histogram::observe` costs four atomic read-modify-writes (a hot/cold shard
//! counter, the bucket, a compare-and-swap loop for the `f64` sum, the count) over three
//! allocations. A series here is one allocation of counters, and an observation is two
//! relaxed `fetch_add`s: its bucket, and the sum kept in whole nanoseconds. The count is not
//! stored: it is the sum of the buckets (including the `+Inf` one), so in every scrape
//! `_count` equals the `+Inf` bucket. `_sum` is read separately and may differ from the
//! buckets by the observations in flight during the scrape.
//!
//! The exposition is the same as a `HistogramVec`'s: one family, `histogram` type, one metric
//! per label set, cumulative buckets with the configured bounds (the registry sorts the
//! metrics by label values and the encoder adds `+Inf`, `_sum` and `_count`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily};

/// The counters of one series: `[sum in ns, bucket 0, …, bucket n-1, +Inf bucket]`, each
/// bucket counting the observations that fell in it (not cumulative). One allocation, the
/// counters right after the reference counts; clones share it.
#[derive(Clone)]
pub(crate) struct Series {
    cells: Arc<[AtomicU64]>,
}

impl Series {
    fn new(buckets: usize) -> Self {
        Series {
            cells: (0..buckets + 2).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records one observation of `d` against `bounds` (the family's, in seconds).
    #[inline]
    pub(crate) fn observe(&self, bounds: &[f64], d: Duration) {
        let v = d.as_secs_f64();
        // A bound's bucket holds values up to and including it, as in Prometheus.
        let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        if let Some(cell) = self.cells.get(1 + i) {
            cell.fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.cells[0].fetch_add(ns, Ordering::Relaxed);
    }

    /// How many observations it holds.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.cells[1..]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The sum of the observations, in seconds.
    #[cfg(test)]
    pub(crate) fn sum(&self) -> f64 {
        self.cells[0].load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// A histogram family with variable labels, registered in a `prometheus::Registry`.
pub(crate) struct DurationFamily {
    desc: Desc,
    /// Upper bounds in seconds, finite and strictly increasing (`+Inf` implicit).
    bounds: Box<[f64]>,
    /// Every series, by label values (for `collect`; the hot path holds its own handles).
    series: Mutex<HashMap<Box<[String]>, Series>>,
}

impl DurationFamily {
    /// A family named `name` with labels `labels` and bucket bounds `bounds` (checked by the
    /// builder).
    pub(crate) fn new(
        name: &str,
        help: &str,
        labels: &[&str],
        bounds: Vec<f64>,
    ) -> prometheus::Result<Self> {
        let desc = Desc::new(
            name.to_owned(),
            help.to_owned(),
            labels.iter().map(|l| (*l).to_owned()).collect(),
            HashMap::new(),
        )?;
        Ok(DurationFamily {
            desc,
            bounds: bounds.into_boxed_slice(),
            series: Mutex::new(HashMap::new()),
        })
    }

    /// The bucket bounds, for [`Series::observe`].
    #[inline]
    pub(crate) fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// The series of `values` (one per variable label, in order), created on first use.
    /// Takes a lock: call it once per series and keep the handle.
    pub(crate) fn series(&self, values: &[&str]) -> Series {
        debug_assert_eq!(values.len(), self.desc.variable_labels.len());
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let key: Box<[String]> = values.iter().map(|v| (*v).to_owned()).collect();
        series
            .entry(key)
            .or_insert_with(|| Series::new(self.bounds.len()))
            .clone()
    }

    fn metric(&self, values: &[String], series: &Series) -> proto::Metric {
        let labels = self
            .desc
            .variable_labels
            .iter()
            .zip(values)
            .map(|(name, value)| {
                let mut pair = proto::LabelPair::default();
                pair.set_name(name.clone());
                pair.set_value(value.clone());
                pair
            })
            .collect();
        let sum = series.cells[0].load(Ordering::Relaxed) as f64 / 1e9;
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&series.cells[1..])
            .map(|(bound, cell)| {
                cumulative += cell.load(Ordering::Relaxed);
                let mut b = proto::Bucket::default();
                b.set_cumulative_count(cumulative);
                b.set_upper_bound(*bound);
                b
            })
            .collect();
        let overflow = series.cells[series.cells.len() - 1].load(Ordering::Relaxed);
        let mut h = proto::Histogram::default();
        h.set_sample_count(cumulative + overflow);
        h.set_sample_sum(sum);
        h.set_bucket(buckets);
        let mut m = proto::Metric::default();
        m.set_label(labels);
        m.set_histogram(h);
        m
    }
}

impl Collector for DurationFamily {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let metrics: Vec<proto::Metric> = {
            let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
            series
                .iter()
                .map(|(values, s)| self.metric(values, s))
                .collect()
        };
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(proto::MetricType::HISTOGRAM);
        family.set_metric(metrics);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family() -> DurationFamily {
        DurationFamily::new("d_seconds", "Durations.", &["a", "b"], vec![0.001, 0.01]).unwrap()
    }

    #[test]
    fn bounds_are_inclusive_and_counts_derive_from_buckets() {
        let f = family();
        let s = f.series(&["x", "y"]);
        for ms in [0, 1, 2, 10, 11, 5_000] {
            s.observe(f.bounds(), Duration::from_millis(ms));
        }
        assert_eq!(s.count(), 6);
        assert!((s.sum() - 5.024).abs() < 1e-12);
        let mf = f.collect();
        let h = mf[0].get_metric()[0].get_histogram();
        let cumulative: Vec<u64> = h
            .get_bucket()
            .iter()
            .map(|b| b.cumulative_count())
            .collect();
        assert_eq!(cumulative, [2, 4]);
        assert_eq!(h.get_sample_count(), 6);
    }

    #[test]
    fn one_series_per_label_set() {
        let f = family();
        let a = f.series(&["x", "y"]);
        let b = f.series(&["x", "y"]);
        assert!(Arc::ptr_eq(&a.cells, &b.cells));
        f.series(&["x", "z"]).observe(f.bounds(), Duration::ZERO);
        let mf = f.collect();
        assert_eq!(mf[0].get_metric().len(), 2);
    }

    #[test]
    fn renders_like_a_histogram_vec() {
        let f = family();
        f.series(&["x", "y"])
            .observe(f.bounds(), Duration::from_micros(1500));
        let r = prometheus::Registry::new();
        r.register(Box::new(f)).unwrap();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&r.gather())
            .unwrap();
        assert_eq!(
            text,
            "# HELP d_seconds Durations.\n\
             # TYPE d_seconds histogram\n\
             d_seconds_bucket{a=\"x\",b=\"y\",le=\"0.001\"} 0\n\
             d_seconds_bucket{a=\"x\",b=\"y\",le=\"0.01\"} 1\n\
             d_seconds_bucket{a=\"x\",b=\"y\",le=\"+Inf\"} 1\n\
             d_seconds_sum{a=\"x\",b=\"y\"} 0.0015\n\
             d_seconds_count{a=\"x\",b=\"y\"} 1\n"
        );
    }
}
