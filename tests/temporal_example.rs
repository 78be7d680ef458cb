//! `examples/temporal_worker.rs` on a real Temporal server (`temporal server start-dev`,
//! started here): a Python workflow calls its activities by name, and a batch whose worker is
//! killed with SIGKILL mid-run resumes from its checkpoint on the restarted example; an example
//! whose namespace is deleted exits with the poll error instead of hanging.
//!
//! `cargo test --features temporal --test temporal_example` (it builds the example, or
//! finds it up to date).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

#[path = "../hb-runtime/tests/temporal/harness.rs"]
#[allow(dead_code)]
mod harness;

/// The example's binary, beside this test's (`target/<profile>/examples/`), built once per
/// run with the features `HB_EXAMPLE_FEATURES` names (default `--features=temporal`): always
/// through cargo, which rebuilds it only when stale (a binary that merely exists
/// may predate the example's source, e.g. in a target directory shared by work trees).
#[path = "support/example_build.rs"]
mod example_build;

fn example_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| example_build::example_binary("temporal_worker", "--features=temporal"))
        .clone()
}

/// The example, started on `queue`; killed when dropped.
struct Example {
    child: Child,
    /// The thread passing its stderr on to ours; it returns all of it.
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Example {
    fn start(binary: &Path, server: &harness::Server, queue: &str) -> Example {
        Example::start_in(binary, server, "default", queue)
    }

    /// The example on `queue` of `namespace`, once it said it was ready. The address and
    /// the namespace are given as flags for the default namespace, and as the `temporal`
    /// CLI's environment variables for any other (so both ways are tested).
    fn start_in(binary: &Path, server: &harness::Server, namespace: &str, queue: &str) -> Example {
        let mut command = Command::new(binary);
        command
            .env_remove("TEMPORAL_ADDRESS")
            .env_remove("TEMPORAL_NAMESPACE");
        if namespace == "default" {
            // `host:port`, as a Temporal user writes it (the SDKs' and the CLI's form).
            command.args(["--address", &server.address, "--namespace", namespace]);
        } else {
            command
                .env("TEMPORAL_ADDRESS", &server.address)
                .env("TEMPORAL_NAMESPACE", namespace);
        }
        let mut child = command
            .args(["--task-queue", queue])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start examples/temporal_worker");
        let stdout = child.stdout.take().expect("its stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let pipe = child.stderr.take().expect("its stderr");
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("{line}");
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("hb worker on") => break,
                Ok(_) => {}
                Err(e) => panic!("the example never said it was ready: {e}"),
            }
        }
        Example {
            child,
            stderr: Some(stderr),
        }
    }

    /// SIGKILL: no shutdown, no final report.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its exit status and all it wrote to stderr, once it exited by itself within `bound`.
    fn exit_within(&mut self, bound: Duration) -> (std::process::ExitStatus, String) {
        let give_up = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("its status") {
                let stderr = self.stderr.take().map(|r| r.join().expect("its stderr"));
                return (status, stderr.unwrap_or_default());
            }
            assert!(
                Instant::now() < give_up,
                "the example still runs after {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last heartbeat details the server holds for the workflow's pending activity.
fn pending_details(venv: &Path, server: &harness::Server, workflow_id: &str) -> serde_json::Value {
    let out = Command::new(venv.join("bin").join("temporal"))
        .args(["workflow", "describe", "--workflow-id", workflow_id])
        .args(["--address", &server.address, "--output", "json"])
        .output()
        .expect("run temporal workflow describe");
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|d| {
            d["pendingActivities"][0]["heartbeatDetails"][0]
                .as_object()
                .cloned()
        })
        .map(serde_json::Value::Object)
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn the_temporal_worker_example_serves_python_and_a_killed_batch_resumes() {
    let binary = example_binary();
    let venv = harness::venv();
    let server = harness::Server::start(&venv);
    let queue = format!("example-{}", std::process::id());

    let example = Example::start(&binary, &server, &queue);
    let out = harness::call(
        &venv,
        &server,
        &[
            "--hb-queue",
            &queue,
            "--activity",
            "double",
            "--input",
            "21",
        ],
    );
    assert_eq!(out, json!({"ok": 42}));

    // A batch of 80 items of 50 ms, heartbeat timeout 2 s: killed once the server holds a
    // checkpoint, resumed by the restarted example after the heartbeat timeout.
    let workflow_id = format!("example-batch-{}", std::process::id());
    let caller = {
        let (venv, address, queue, workflow_id) = (
            venv.clone(),
            server.address.clone(),
            queue.clone(),
            workflow_id.clone(),
        );
        std::thread::spawn(move || {
            harness::call_at(
                &venv,
                &address,
                &[
                    "--hb-queue",
                    &queue,
                    "--activity",
                    "process_batch",
                    "--input",
                    r#"{"items": 80, "item_ms": 50}"#,
                    "--heartbeat-timeout",
                    "2",
                    "--max-attempts",
                    "3",
                    "--workflow-id",
                    &workflow_id,
                ],
            )
        })
    };
    let give_up = Instant::now() + Duration::from_secs(60);
    let checkpoint = loop {
        let d = pending_details(&venv, &server, &workflow_id);
        if d["next"].as_u64().is_some_and(|n| n > 0) {
            break d;
        }
        assert!(Instant::now() < give_up, "no checkpoint reached the server");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(checkpoint["total"], 80, "{checkpoint}");
    example.kill();
    let _example = Example::start(&binary, &server, &queue);
    let out = caller.join().expect("the Python caller");
    let report = &out["ok"];
    assert_eq!(report["attempt"], 2, "{out}");
    let resumed = report["resumed_from"].as_u64().expect("resumed_from");
    assert!(resumed >= checkpoint["next"].as_u64().unwrap(), "{out}");
    assert_eq!(
        resumed + report["processed"].as_u64().expect("processed"),
        80,
        "{out}"
    );
}

#[test]
fn the_temporal_worker_example_exits_with_the_error_when_it_cannot_poll() {
    let binary = example_binary();
    let venv = harness::venv();
    let server = harness::Server::start(&venv);
    let namespace = format!("example-gone-{}", std::process::id());
    harness::cli(
        &venv,
        &server,
        &["operator", "namespace", "create", "--namespace", &namespace],
    );
    let mut example = Example::start_in(&binary, &server, &namespace, "example-gone");
    harness::cli(
        &venv,
        &server,
        &[
            "operator",
            "namespace",
            "delete",
            "--namespace",
            &namespace,
            "--yes",
        ],
    );
    // Its next poll fails (the harness's server answers long polls within 5 s), for good
    // after core's 60 s of retries: the example stops and exits instead of hanging.
    let (status, stderr) = example.exit_within(Duration::from_secs(100));
    assert_eq!(status.code(), Some(1), "{status}: {stderr}");
    let said = format!("namespace {namespace:?} stopped: polling failed with NotFound");
    assert!(stderr.contains(&said), "{stderr}");
}
