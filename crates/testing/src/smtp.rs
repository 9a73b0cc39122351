//! A real SMTP server for tests: aiosmtpd (installed by `scripts/smtp`), receiving into a
//! Maildir that tests read. Plain, STARTTLS or SMTPS, with a certificate made for the test
//! (by the `openssl` command) for 127.0.0.1.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    /// STARTTLS offered and required.
    StartTls,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

pub struct SmtpServer {
    pub port: u16,
    /// The certificate authority (PEM) that signed the server's certificate: what a client
    /// must trust.
    pub ca: PathBuf,
    maildir: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> String {
    if let Ok(p) = std::env::var("GS_SMTP_PYTHON") {
        return p;
    }
    let out = Command::new(repo().join("scripts/smtp"))
        .arg("python")
        .output()
        .expect("run scripts/smtp python");
    assert!(
        out.status.success(),
        "scripts/smtp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A test CA and a server certificate it signed for 127.0.0.1 (TLS clients refuse a
/// self-signed CA certificate as a server's own). Returns (CA, server certificate, key).
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl (scripts/smtp ensure installs it)");
        assert!(status.success(), "openssl {args:?} failed");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-days", "2", "-subj", "/CN=GlucoSync test CA"],
        &["-keyout", "ca.key", "-out", "ca.pem"],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write extensions");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "cert.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

impl SmtpServer {
    pub fn start(tls: SmtpTls) -> SmtpServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let maildir = dir.path().join("maildir");
        let (ca, cert, key) = make_certificates(dir.path());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = Command::new(python());
        command
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"]);
        match tls {
            SmtpTls::None => {}
            SmtpTls::StartTls => {
                command
                    .arg("--tlscert")
                    .arg(&cert)
                    .arg("--tlskey")
                    .arg(&key);
            }
            SmtpTls::Implicit => {
                command
                    .arg("--smtpscert")
                    .arg(&cert)
                    .arg("--smtpskey")
                    .arg(&key);
            }
        }
        let child = command
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let server = SmtpServer {
            port,
            ca,
            maildir,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Every message received so far (raw RFC 5322 text).
    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) {
                for e in entries.flatten() {
                    if let Ok(text) = std::fs::read_to_string(e.path()) {
                        out.push(text);
                    }
                }
            }
        }
        out
    }

    /// Waits until a message satisfying `pred` has arrived; returns it.
    pub async fn wait_for(&self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| pred(m)) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no such message; received: {:?}",
                self.messages()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
