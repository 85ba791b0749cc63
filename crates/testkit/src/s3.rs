//! A real S3 server (s3s-fs: the S3 protocol with signature checks, over a
//! folder) inside the test process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const ACCESS_KEY: &str = "weir-test-access";
pub const SECRET_KEY: &str = "weir-test-secret-key-0123456789";

/// An S3 server on `127.0.0.1:<port>` serving the buckets (folders) under `root`.
pub struct S3Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    task: JoinHandle<()>,
}

impl S3Server {
    /// Start serving `root`; each folder in it is a bucket.
    pub async fn start(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("s3s-fs over {}: {e:?}", root.display()))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            while let Ok((socket, _)) = listener.accept().await {
                let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Ok(Self { addr, root: root.to_owned(), task })
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

    /// Stop accepting connections: the server is "down".
    pub fn stop(&self) {
        self.task.abort();
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
