//! Shared helpers of the behaviour tests: a tracing layer that captures events together with
//! the fields of the spans they happened in.
//!
//! The layer is installed as the process-wide default subscriber (each test file is its own
//! process), so events emitted on the heartbeat pump's thread and on blocking threads are
//! captured too. Tests running in parallel tell their events apart by the attempt span's
//! `activity_id`, so give every test its own id.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One captured event.
#[derive(Debug, Clone)]
pub struct Captured {
    pub level: Level,
    pub target: String,
    /// The `message` field.
    pub message: String,
    /// The event's own fields (other than `message`), formatted.
    pub fields: BTreeMap<String, String>,
    /// The spans the event happened in, root first: name and fields.
    pub spans: Vec<(String, BTreeMap<String, String>)>,
}

impl Captured {
    /// The value of field `name` of the innermost enclosing span that has it.
    pub fn span_field(&self, name: &str) -> Option<&str> {
        self.spans
            .iter()
            .rev()
            .find_map(|(_, f)| f.get(name).map(String::as_str))
    }

    /// The event's field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Default, Clone)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// Everything the capture layer saw.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<Captured>>>);

impl Logs {
    pub fn all(&self) -> Vec<Captured> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The events that happened inside the attempt span of `activity_id`.
    pub fn for_activity(&self, activity_id: &str) -> Vec<Captured> {
        self.all()
            .into_iter()
            .filter(|e| {
                e.spans.iter().any(|(name, f)| {
                    name == "activity"
                        && f.get("activity_id").map(String::as_str) == Some(activity_id)
                })
            })
            .collect()
    }
}

struct CaptureLayer(Logs);

impl<S> Layer<S> for CaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|span| {
                        let f = span
                            .extensions()
                            .get::<Fields>()
                            .cloned()
                            .unwrap_or_default();
                        (span.name().to_owned(), f.0)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let captured = Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message,
            fields: fields.0,
            spans,
        };
        (self.0)
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(captured);
    }
}

/// The process-wide capture, installed on first use.
pub fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::registry().with(CaptureLayer(logs.clone()));
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test process");
        logs
    })
}
