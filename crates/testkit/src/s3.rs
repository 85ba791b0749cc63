//! A real S3 server (s3s-fs: the S3 protocol with signature checks, over a
//! folder) inside the test process, with the faults tests need: going down
//! (every connection dropped) at a chosen request, and coming back.
//!
//! s3s-fs checks `If-None-Match: *` and then writes; S3 does both atomically.
//! The server here serialises such conditional PUTs, so that two writers
//! racing to create one object meet S3's semantics (one wins, one gets 412).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use s3s::{Body, HttpError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const ACCESS_KEY: &str = "weir-test-access";
pub const SECRET_KEY: &str = "weir-test-secret-key-0123456789";

/// An S3 server on `127.0.0.1:<port>` serving the buckets (folders) under `root`.
pub struct S3Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    faults: Arc<Faults>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Faults {
    down: AtomicBool,
    /// Go down when a request with this method and a path containing this text arrives.
    down_at: Mutex<Option<(String, String)>>,
    conditional_put: tokio::sync::Mutex<()>,
}

impl Faults {
    /// Whether this request finds the server down (and takes it down if it is the trigger).
    fn is_down(&self, method: &str, path: &str) -> bool {
        let mut at = self.down_at.lock().unwrap_or_else(|e| e.into_inner());
        if at.as_ref().is_some_and(|(m, p)| m == method && path.contains(p.as_str())) {
            *at = None;
            self.down.store(true, Ordering::SeqCst);
        }
        self.down.load(Ordering::SeqCst)
    }
}

impl S3Server {
    /// Start serving `root`; each folder in it is a bucket.
    pub async fn start(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("s3s-fs over {}: {e:?}", root.display()))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let faults = Arc::new(Faults::default());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = faults.clone();
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            while let Ok((socket, _)) = listener.accept().await {
                let (service, faults) = (service.clone(), shared.clone());
                let handler = service_fn(move |req: hyper::Request<Incoming>| {
                    let (service, faults) = (service.clone(), faults.clone());
                    async move {
                        if faults.is_down(req.method().as_str(), req.uri().path()) {
                            // An error from the service makes hyper drop the connection unanswered.
                            return Err(HttpError::new("the test S3 server is down".into()));
                        }
                        let conditional =
                            req.method() == hyper::Method::PUT && req.headers().contains_key("if-none-match");
                        let _serial = match conditional {
                            true => Some(faults.conditional_put.lock().await),
                            false => None,
                        };
                        service.call(req.map(Body::from)).await
                    }
                });
                let conn = http.serve_connection(TokioIo::new(socket), handler).into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Ok(Self { addr, root: root.to_owned(), faults, task })
    }

    /// Go down when a `method` request whose path contains `path_part` arrives
    /// (that request is dropped too): "down in the middle of a write".
    pub fn go_down_at(&self, method: &str, path_part: &str) {
        *self.faults.down_at.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((method.to_owned(), path_part.to_owned()));
    }

    /// Serve again.
    pub fn come_back(&self) {
        self.faults.down.store(false, Ordering::SeqCst);
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Create a bucket (a folder) and return its local path.
    pub fn bucket(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.root.join(name);
        std::fs::create_dir_all(&path)?;
        Ok(path)
    }

    /// A `WEIR_CONN_*` URL for `s3://bucket/prefix` on this server, credentials included.
    pub fn connection_url(&self, bucket: &str, prefix: &str) -> String {
        s3_url(&self.endpoint(), bucket, prefix)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `s3://bucket/prefix?endpoint=…&…` with the test credentials.
pub fn s3_url(endpoint: &str, bucket: &str, prefix: &str) -> String {
    format!(
        "s3://{bucket}/{prefix}?endpoint={endpoint}&region=us-east-1&access_key_id={ACCESS_KEY}\
         &secret_access_key={SECRET_KEY}&allow_http=true"
    )
}
