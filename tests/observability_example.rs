//! `examples/observability.rs` as a user runs it: it prints the dashboard's and the metrics'
//! addresses, the dashboard lists its batches (one resumed by a retry), and `/metrics` has
//! the activity and engine metrics in Prometheus' text format. It refuses a non-loopback
//! address.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/example_build.rs"]
mod example_build;

fn binary() -> PathBuf {
    example_build::example_binary("observability", "--features=dashboard")
}

/// The example; stopped with Ctrl-C (SIGINT) when dropped, as a user stops it, and killed if
/// it has not exited 20 s later.
struct Running(Child);

impl Running {
    /// Ctrl-C, then its exit status (`None`: it was still running 20 s later, and killed).
    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        // The shell's own `kill`: no procps needed.
        let sent = Command::new("sh")
            .args(["-c", &format!("kill -INT {}", self.0.id())])
            .status()
            .is_ok_and(|s| s.success());
        let t0 = Instant::now();
        while sent && t0.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.interrupt();
        }
    }
}

/// `GET path` on `addr` (HTTP/1.1, a loopback Host): the status line and the body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).expect("an answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// Polls `f` every 100 ms until it holds, for at most 30 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "waited 30 s for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn it_prints_both_addresses_and_serves_the_dashboard_and_the_metrics() {
    let mut child = Command::new(binary())
        .args(["--listen", "127.0.0.1:0", "--for", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the example");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The example keeps its engine file in a directory named after its process id.
    let prefix = format!("hb-observability-{}-", child.id());
    let dirs = move || -> Vec<PathBuf> {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .collect()
    };
    let mut running = Running(child);
    let dashboard = lines.next().expect("a first line").unwrap();
    let metrics = lines.next().expect("a second line").unwrap();
    let dashboard = dashboard
        .strip_prefix("dashboard: http://")
        .and_then(|a| a.strip_suffix('/'))
        .unwrap_or_else(|| panic!("the dashboard's address: {dashboard}"))
        .to_owned();
    assert_eq!(metrics, format!("metrics:   http://{dashboard}/metrics"));

    // Batches arrive and run; the first that fails once (the second) resumes.
    eventually("a completed batch on the dashboard", || {
        let (status, body) = get(&dashboard, "/?state=completed");
        status.contains("200") && body.contains("resize-0001")
    });
    eventually("the second batch's retry", || {
        let (_, body) = get(&dashboard, "/activity?id=resize-0002");
        body.contains("StorageUnavailable") && body.contains("data-outcome=\"failed\"")
    });
    let (status, body) = get(&dashboard, "/metrics");
    assert!(status.contains("200"), "{status}");
    for line in [
        "# TYPE hb_activity_started counter",
        "hb_activity_started{activity_type=\"resize_images\"}",
        "hb_activity_execution_failed{activity_type=\"resize_images\",error_type=\"StorageUnavailable\"}",
        "hb_engine_open_activities",
        "hb_worker_task_slots_available{worker=\"resize_images\"}",
    ] {
        assert!(body.contains(line), "`{line}` in /metrics:\n{body}");
    }
    let made = dirs();
    assert!(
        made.len() == 1 && made[0].join("hb.db").exists(),
        "its engine file: {made:?}"
    );

    // Ctrl-C: it shuts its worker and engine down (cancelling the batches still running),
    // removes its engine file, and exits 0.
    let status = running.interrupt().expect("it exits within 20 s of Ctrl-C");
    assert!(status.success(), "{status}");
    assert!(dirs().is_empty(), "still there: {:?}", dirs());
}

#[test]
fn it_refuses_an_address_that_is_not_loopback() {
    let out = Command::new(binary())
        .args(["--listen", "0.0.0.0:0", "--for", "1"])
        .output()
        .expect("run the example");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}
