//! The `#[activity]` options, one row each. A row is all the macro knows about a key: that it
//! exists (unknown keys and "did you mean" list the rows), how its value is read and what
//! "expected `key = ..`" shows, the `ActivityOptions` or `RetryPolicy` call generated, whether
//! the paragraph added to the function's docs mentions it, and its line in the options tables
//! of the macro's documentation. Adding an option is adding a row (and, if it has one, its
//! rule against other options in `args::validate`).

/// One option.
#[derive(Debug)]
pub(crate) struct Spec {
    /// The key, and the name of the `ActivityOptions` (or `RetryPolicy`) setter it calls.
    pub(crate) key: &'static str,
    /// A value, for messages and the docs; empty for `retry(..)`, which takes a list.
    pub(crate) example: &'static str,
    pub(crate) kind: Kind,
    /// Whether the paragraph added to the function's docs mentions it.
    pub(crate) summary: bool,
}

impl Spec {
    /// The key as listed in messages: `retry(..)` for a list.
    pub(crate) fn listed(&self) -> String {
        if self.example.is_empty() {
            format!("{}(..)", self.key)
        } else {
            self.key.to_owned()
        }
    }

    /// The option as written with its example value: `heartbeat_timeout = "10s"`.
    pub(crate) fn written(&self) -> String {
        if self.example.is_empty() {
            self.listed()
        } else {
            format!("{} = {}", self.key, self.example)
        }
    }
}

/// What an option's value is, which says how it is read and what code it generates.
#[derive(Debug)]
pub(crate) enum Kind {
    /// A duration string: `.key(Duration::..)`.
    Duration,
    /// One of a few strings: `.key(Type::Variant)`.
    Choice {
        /// The type in `__private` the variants belong to.
        ty: &'static str,
        values: &'static [Choice],
    },
    /// A size in bytes, 1 ..= 2 MiB: `.key(n)`.
    Size,
    /// A whole number of attempts: `.key(n)`.
    Attempts,
    /// A number of at least 1.0: `.key(x)`.
    Factor,
    /// Error type names: `.key(&["A", ..])`.
    TypeNames,
    /// A list of the [`RETRY`] options: `.retry(RetryPolicy::new()..)`.
    Retry,
    /// The activity type name: `const NAME` (default: the function's name).
    Name,
    /// The path the generated code names hb_runtime by.
    Crate,
}

/// One value of a [`Kind::Choice`].
#[derive(Debug)]
pub(crate) struct Choice {
    /// As written, without quotes.
    pub(crate) value: &'static str,
    /// The enum variant it stands for.
    pub(crate) variant: &'static str,
    /// What the docs paragraph says about it, if anything.
    pub(crate) summary: Option<&'static str>,
}

/// Defines a table of [`Spec`]s and a macro expanding to the rows of its documentation table,
/// from one list of rows:
/// `"key" [= "example" | (..)] => kind, summary: bool, doc: "equivalent code", "rules";`.
macro_rules! options {
    (
        $(#[$attr:meta])*
        $table:ident, $doc_rows:ident:
        $(
            $key:literal $(= $example:literal)? $(($($list:tt)*))? => $kind:expr,
                summary: $summary:literal,
                doc: $code:literal, $rules:literal;
        )*
    ) => {
        $(#[$attr])*
        pub(crate) const $table: &[Spec] = &[$(
            Spec {
                key: $key,
                example: concat!("" $(, $example)?),
                kind: $kind,
                summary: $summary,
            },
        )*];

        /// The rows of the documentation table of these options.
        macro_rules! $doc_rows {
            () => {
                concat!($(
                    "| `", $key, $(" = ", $example,)? $("(", stringify!($($list)*), ")",)?
                    "` | ", $code, " | ", $rules, " |\n",
                )*)
            };
        }
        pub(crate) use $doc_rows;
    };
}

options! {
    /// `#[activity(...)]`, in the order the docs list them (and the generated code calls them).
    OPTIONS, option_rows:
    "heartbeat_timeout" = "\"10s\"" => Kind::Duration, summary: true,
        doc: "`.heartbeat_timeout(Duration::from_secs(10))`", "at most `start_to_close_timeout`";
    "heartbeat_interval" = "\"2s\"" => Kind::Duration, summary: false,
        doc: "`.heartbeat_interval(Duration::from_secs(2))`", "at most 0.8 × `heartbeat_timeout`";
    "start_to_close_timeout" = "\"1h\"" => Kind::Duration, summary: true,
        doc: "`.start_to_close_timeout(Duration::from_secs(3600))`", "";
    "schedule_to_close_timeout" = "\"4h\"" => Kind::Duration, summary: true,
        doc: "`.schedule_to_close_timeout(Duration::from_secs(14400))`",
        "at least `start_to_close_timeout`";
    "retry" (..) => Kind::Retry, summary: true,
        doc: "`.retry(RetryPolicy::new()..)`, with the keys below", "";
    "stall_timeout" = "\"2m\"" => Kind::Duration, summary: true,
        doc: "`.stall_timeout(Duration::from_secs(120))`", "needs `heartbeat_timeout`";
    "cancel" = "\"cooperative\"" => Kind::Choice {
            ty: "CancelMode",
            values: &[
                Choice { value: "abort", variant: "Abort", summary: None },
                Choice {
                    value: "cooperative",
                    variant: "Cooperative",
                    summary: Some("cooperative cancellation"),
                },
            ],
        }, summary: true,
        doc: "`.cancel(CancelMode::Cooperative)` (or `\"abort\"`, the default)", "";
    "cancel_grace" = "\"5s\"" => Kind::Duration, summary: false,
        doc: "`.cancel_grace(Duration::from_secs(5))`", "needs `cancel = \"cooperative\"`";
    "on_bad_checkpoint" = "\"fail\"" => Kind::Choice {
            ty: "BadCheckpointPolicy",
            values: &[
                Choice { value: "restart", variant: "Restart", summary: None },
                Choice { value: "fail", variant: "Fail", summary: None },
            ],
        }, summary: false,
        doc: "`.on_bad_checkpoint(BadCheckpointPolicy::Fail)` (or `\"restart\"`, the default)", "";
    "max_checkpoint_size" = "65536" => Kind::Size, summary: false,
        doc: "`.max_checkpoint_size(65536)`", "1 ..= 2097152 (2 MiB); `64 * 1024` works too";
    "name" = "\"process-batch\"" => Kind::Name, summary: false,
        doc: "`const NAME: &str = \"process-batch\";` (default: the function's name)", "not empty";
    "crate" = "\"my_crate::hb\"" => Kind::Crate, summary: false,
        doc: "generated code names `my_crate::hb::__private::..` instead of \
              `::hb_runtime::__private::..`", "a path";
}

options! {
    /// `retry(...)`.
    RETRY, retry_rows:
    "max_attempts" = "5" => Kind::Attempts, summary: true,
        doc: "`.max_attempts(5)`", "first attempt included; 0 = unlimited";
    "initial_interval" = "\"1s\"" => Kind::Duration, summary: false,
        doc: "`.initial_interval(Duration::from_secs(1))`", "";
    "backoff" = "2.0" => Kind::Factor, summary: false,
        doc: "`.backoff(2.0)`", "at least 1.0";
    "max_interval" = "\"1m\"" => Kind::Duration, summary: false,
        doc: "`.max_interval(Duration::from_secs(60))`", "at least `initial_interval`";
    "non_retryable" = "[\"BadInput\"]" => Kind::TypeNames, summary: false,
        doc: "`.non_retryable(&[\"BadInput\"])`", "error types never retried; names not empty";
}

/// The keys of `table` as listed in messages.
pub(crate) fn listed(table: &[Spec]) -> Vec<String> {
    table.iter().map(Spec::listed).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_well_formed() {
        for table in [OPTIONS, RETRY] {
            for (i, spec) in table.iter().enumerate() {
                assert!(
                    table[..i].iter().all(|other| other.key != spec.key),
                    "{} twice",
                    spec.key
                );
                assert_eq!(
                    spec.example.is_empty(),
                    matches!(spec.kind, Kind::Retry),
                    "{}: only a list has no example",
                    spec.key
                );
            }
        }
        assert_eq!(OPTIONS[4].written(), "retry(..)");
        assert_eq!(OPTIONS[0].written(), "heartbeat_timeout = \"10s\"");
    }

    #[test]
    fn doc_rows_come_from_the_rows() {
        let rows: &str = option_rows!();
        assert_eq!(rows.lines().count(), OPTIONS.len());
        assert!(rows.starts_with(
            "| `heartbeat_timeout = \"10s\"` | `.heartbeat_timeout(Duration::from_secs(10))` | \
             at most `start_to_close_timeout` |\n"
        ));
        assert!(rows.contains("| `retry(..)` |"), "{rows}");
        let rows: &str = retry_rows!();
        assert_eq!(rows.lines().count(), RETRY.len());
    }
}
