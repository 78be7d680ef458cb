// Any error type that converts into `ActivityError` works; the conversion runs on failure.
use hb_runtime::prelude::*;

#[derive(Debug)]
enum ParseError {
    Empty,
}

impl From<ParseError> for ActivityError {
    fn from(e: ParseError) -> Self {
        ActivityError::non_retryable("ParseError", format!("{e:?}"))
    }
}

#[activity(retry(non_retryable = ["ParseError"]))]
async fn parse(_ctx: ActivityContext, s: String) -> Result<u64, ParseError> {
    s.parse().map_err(|_| ParseError::Empty)
}

#[activity]
async fn io(_ctx: ActivityContext) -> std::result::Result<(), std::io::Error> {
    Err(std::io::Error::new(std::io::ErrorKind::NotFound, "gone"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let env = hb_runtime::testing::ActivityEnvironment::new();
    assert_eq!(env.run(parse, "12".into()).await.result.unwrap(), 12);
    let err = env.run(parse, "".into()).await.result.unwrap_err();
    assert_eq!(err.error_type(), "ParseError");
    assert!(!err.is_retryable());
    let err = env.run(io, ()).await.result.unwrap_err();
    assert!(err.error_type().starts_with("io::"), "{err}");
}
