//! A temporalio-sdk worker for the Temporal tests and bench (apart from `harness.rs`, which
//! the workspace-level example test includes without depending on temporalio-sdk).

/// A temporalio-sdk worker with the options `options` makes, connected to the server at `url`,
/// on a thread of its own (its `run()` future is not `Send`). Returns its shutdown (call it
/// inside a tokio runtime) and its thread.
pub fn sdk_worker(
    url: &str,
    options: impl FnOnce() -> temporalio_sdk::WorkerOptions + Send + 'static,
) -> (Box<dyn Fn() + Send>, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel::<Box<dyn Fn() + Send>>();
    let url = url.to_owned();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default()).unwrap();
            let connection = temporalio_client::Connection::connect(
                temporalio_client::ConnectionOptions::new(
                    temporalio_client::Url::parse(&url).unwrap(),
                )
                .identity("hb-tests-sdk-worker")
                .build(),
            )
            .await
            .unwrap();
            let client = temporalio_client::Client::new(
                connection,
                temporalio_client::ClientOptions::new("default").build(),
            )
            .unwrap();
            let mut worker = temporalio_sdk::Worker::new(&runtime, client, options()).unwrap();
            tx.send(Box::new(worker.shutdown_handle())).unwrap();
            worker.run().await.unwrap();
        });
    });
    (rx.recv().expect("the SDK worker starts"), thread)
}
