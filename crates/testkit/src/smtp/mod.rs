//! A real SMTP server for tests: aiosmtpd (PyPI), one per test, each with its
//! own folder. Every message it accepts is read back as Python's email package
//! reads it ([`Mail`]); recipients starting with `reject` are refused with 550.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

const SERVER: &str = include_str!("server.py");

/// One message as a mail client shows it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Mail {
    pub subject: String,
    pub from: String,
    pub to: String,
    pub envelope_from: String,
    pub envelope_to: Vec<String>,
    pub content_type: String,
    pub text: Option<String>,
    pub html: Option<String>,
}

pub struct SmtpServer {
    port: u16,
    dir: TempDir,
    child: Child,
}

impl SmtpServer {
    /// Start a server on a free port of 127.0.0.1 (needs `pip install aiosmtpd`).
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let script = dir.path().join("server.py");
        std::fs::write(&script, SERVER)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(dir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting aiosmtpd (python3 with aiosmtpd: scripts/services.sh smtp installs it)")?;
        let mut server = Self { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!("the SMTP server exited ({status}); is aiosmtpd installed?");
            }
            if Instant::now() > deadline {
                bail!("the SMTP server did not listen on {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// `smtp://127.0.0.1:PORT`, for `WEIR_SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The raw messages, as a Maildir.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail").join("Maildir")
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> anyhow::Result<Vec<Mail>> {
        read_messages(&self.dir.path().join("mail"))
    }

    /// Wait up to `timeout` for `n` messages.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<Mail>> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages()?;
            if messages.len() >= n || Instant::now() > deadline {
                return Ok(messages);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn read_messages(dir: &Path) -> anyhow::Result<Vec<Mail>> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    paths.sort();
    paths.iter().map(|p| serde_json::from_slice(&std::fs::read(p)?).with_context(|| p.display().to_string())).collect()
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
