//! Core's metrics through the `metrics` facade: a [`CoreMeter`] whose instruments are the
//! facade's, so `temporal_*` metrics (slots, polls, requests, latencies) reach the recorder
//! hb's own metrics reach, with their labels.
//!
//! Core binds an instrument to its labels once and keeps the bound handle for hot paths;
//! binding resolves the facade's handle then.

use std::sync::Arc;
use std::time::Duration;

use ::metrics::{Label, Unit};
use temporalio_common::telemetry::metrics::{
    CoreMeter, Counter, CounterBase, Gauge, GaugeBase, GaugeF64, GaugeF64Base, Histogram,
    HistogramBase, HistogramDuration, HistogramDurationBase, HistogramF64, HistogramF64Base,
    MetricAttributable, MetricAttributes, MetricParameters, NewAttributes, OrderedPromLabelSet,
    UpDownCounter, UpDownCounterBase,
};

/// The meter handed to core's runtime (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(super) struct FacadeMeter;

/// The labels of `attributes` (made by [`FacadeMeter`]; core's empty set has none).
fn labels_of(attributes: &MetricAttributes) -> Vec<Label> {
    match attributes {
        MetricAttributes::Prometheus { labels } => labels
            .as_prom_labels()
            .into_iter()
            .map(|(k, v)| Label::new(k.to_owned(), v))
            .collect(),
        _ => Vec::new(),
    }
}

fn extend(existing: &MetricAttributes, new: NewAttributes) -> MetricAttributes {
    let mut set = match existing {
        MetricAttributes::Prometheus { labels } => (**labels).clone(),
        _ => OrderedPromLabelSet::new(),
    };
    for kv in new.attributes {
        set.add_kv(kv);
    }
    MetricAttributes::Prometheus {
        labels: Arc::new(set),
    }
}

/// One instrument: its name, bound to labels on request.
#[derive(Debug, Clone)]
struct Instrument {
    name: String,
}

/// What an instrument is to the recorder (for its description).
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram(Option<Unit>),
}

impl Instrument {
    fn new(params: &MetricParameters, kind: Kind) -> Self {
        let name = params.name.to_string();
        let description = params.description.to_string();
        match kind {
            Kind::Counter => ::metrics::describe_counter!(name.clone(), description),
            Kind::Gauge => ::metrics::describe_gauge!(name.clone(), description),
            Kind::Histogram(Some(u)) => {
                ::metrics::describe_histogram!(name.clone(), u, description)
            }
            Kind::Histogram(None) => ::metrics::describe_histogram!(name.clone(), description),
        }
        Instrument { name }
    }
}

struct BoundCounter(::metrics::Counter);
struct BoundGauge(::metrics::Gauge);
struct BoundHistogram(::metrics::Histogram);

impl CounterBase for BoundCounter {
    fn adds(&self, value: u64) {
        self.0.increment(value);
    }
}
impl UpDownCounterBase for BoundGauge {
    fn adds(&self, value: i64) {
        if value >= 0 {
            self.0.increment(value as f64);
        } else {
            self.0.decrement(value.unsigned_abs() as f64);
        }
    }
}
impl GaugeBase for BoundGauge {
    fn records(&self, value: u64) {
        self.0.set(value as f64);
    }
}
impl GaugeF64Base for BoundGauge {
    fn records(&self, value: f64) {
        self.0.set(value);
    }
}
impl HistogramBase for BoundHistogram {
    fn records(&self, value: u64) {
        self.0.record(value as f64);
    }
}
impl HistogramF64Base for BoundHistogram {
    fn records(&self, value: f64) {
        self.0.record(value);
    }
}
impl HistogramDurationBase for BoundHistogram {
    fn records(&self, value: Duration) {
        self.0.record(value.as_secs_f64());
    }
}

type Bound<T> = Result<Box<T>, Box<dyn std::error::Error>>;

struct CounterOf(Instrument);
struct GaugeOf(Instrument);
struct HistogramOf(Instrument);

/// `$of` binds to labels as a `$bound` over the facade's `$handle!` (one impl per base trait
/// core asks for).
macro_rules! bind {
    ($of:ty => $bound:ident($handle:ident) as $($base:ident),+) => {$(
        impl MetricAttributable<Box<dyn $base>> for $of {
            fn with_attributes(&self, a: &MetricAttributes) -> Bound<dyn $base> {
                Ok(Box::new($bound(::metrics::$handle!(self.0.name.clone(), labels_of(a)))))
            }
        }
    )+};
}

bind!(CounterOf => BoundCounter(counter) as CounterBase);
bind!(GaugeOf => BoundGauge(gauge) as UpDownCounterBase, GaugeBase, GaugeF64Base);
bind!(HistogramOf => BoundHistogram(histogram) as HistogramBase, HistogramF64Base, HistogramDurationBase);

impl CoreMeter for FacadeMeter {
    fn new_attributes(&self, attribs: NewAttributes) -> MetricAttributes {
        extend(&MetricAttributes::Empty, attribs)
    }

    fn extend_attributes(
        &self,
        existing: MetricAttributes,
        attribs: NewAttributes,
    ) -> MetricAttributes {
        extend(&existing, attribs)
    }

    fn counter(&self, params: MetricParameters) -> Counter {
        Counter::new(Arc::new(CounterOf(Instrument::new(&params, Kind::Counter))))
    }

    fn histogram(&self, params: MetricParameters) -> Histogram {
        Histogram::new(Arc::new(HistogramOf(Instrument::new(
            &params,
            Kind::Histogram(None),
        ))))
    }

    fn histogram_f64(&self, params: MetricParameters) -> HistogramF64 {
        HistogramF64::new(Arc::new(HistogramOf(Instrument::new(
            &params,
            Kind::Histogram(None),
        ))))
    }

    /// In seconds, as hb's own latencies.
    fn histogram_duration(&self, mut params: MetricParameters) -> HistogramDuration {
        params.unit = "s".into();
        HistogramDuration::new(Arc::new(HistogramOf(Instrument::new(
            &params,
            Kind::Histogram(Some(Unit::Seconds)),
        ))))
    }

    fn gauge(&self, params: MetricParameters) -> Gauge {
        Gauge::new(Arc::new(GaugeOf(Instrument::new(&params, Kind::Gauge))))
    }

    fn gauge_f64(&self, params: MetricParameters) -> GaugeF64 {
        GaugeF64::new(Arc::new(GaugeOf(Instrument::new(&params, Kind::Gauge))))
    }

    fn up_down_counter(&self, params: MetricParameters) -> UpDownCounter {
        UpDownCounter::new(Arc::new(GaugeOf(Instrument::new(&params, Kind::Gauge))))
    }
}
