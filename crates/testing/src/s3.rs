//! A real S3 server for the backup tests: `s3s-fs` (crates.io), built once by `scripts/s3`,
//! on a free loopback port, storing objects as files in a temporary directory, checking every
//! request's signature against its keys.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "glucosync-test";
pub const SECRET_KEY: &str = "glucosync-test-secret-key";

pub struct S3Server {
    pub port: u16,
    pub root: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

fn binary() -> String {
    if let Ok(p) = std::env::var("GS_S3S_FS") {
        return p;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3");
    let out = Command::new(script)
        .arg("bin")
        .output()
        .expect("run scripts/s3 bin");
    assert!(
        out.status.success(),
        "scripts/s3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl S3Server {
    /// Starts the server with the buckets named (each a directory under its root).
    pub fn start(buckets: &[&str]) -> S3Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("s3");
        for bucket in buckets {
            std::fs::create_dir_all(root.join(bucket)).expect("bucket directory");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server {
            port,
            root,
            child,
            _dir: dir,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The names of the objects in `bucket` under `prefix`, sorted (read from the server's
    /// directory, not through the API under test).
    pub fn objects(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let dir = self.root.join(bucket).join(prefix);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The stored bytes of an object (to damage it behind the API's back).
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
