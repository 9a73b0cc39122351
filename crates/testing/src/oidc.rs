//! A real OpenID Connect provider for tests: npm `oidc-provider` configured by
//! `tools/oidc-provider` (accounts `ana` / `ana-password`, email verified, in the group
//! `glucosync-admins`; `ben` / `ben-password`, email not verified), started with
//! `scripts/oidc start`, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub const CLIENT_ID: &str = "glucosync";
pub const CLIENT_SECRET: &str = "glucosync-test-secret";

pub struct OidcProvider {
    /// e.g. `http://127.0.0.1:41025`
    pub issuer: String,
    child: Child,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl OidcProvider {
    /// Starts a provider whose client accepts `redirect_uris`; extra options (e.g.
    /// `--id-token-ttl 1`) are passed on.
    pub fn start(redirect_uris: &[String], options: &[&str]) -> OidcProvider {
        let mut command = Command::new(repo().join("scripts/oidc"));
        command.args(["start", "--port", "0"]);
        for uri in redirect_uris {
            command.args(["--redirect-uri", uri]);
        }
        let mut child = command
            .args(options)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run scripts/oidc start");
        let stdout = child.stdout.take().expect("stdout");
        let mut issuer = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read the provider's output");
            if let Some(rest) = line.strip_prefix("READY ") {
                issuer = Some(rest.trim().to_owned());
                break;
            }
        }
        let Some(issuer) = issuer else {
            let _ = child.kill();
            panic!("the OIDC provider did not start (see scripts/oidc start)");
        };
        OidcProvider { issuer, child }
    }

    /// The server's root (the test-only endpoints live there).
    pub fn root(&self) -> String {
        let after_scheme = &self.issuer["http://".len()..];
        let host = after_scheme.split('/').next().unwrap_or(after_scheme);
        format!("http://{host}")
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
