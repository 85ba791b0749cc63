//! A TCP proxy that can cut connections: a server that drops mid-read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards 127.0.0.1:`port()` to `upstream`.
pub struct TcpProxy {
    addr: SocketAddr,
    faults: Arc<Faults>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Faults {
    /// Cut a connection once the server has sent it this many bytes…
    cut_after: AtomicU64,
    /// …this many more times (0: never).
    cuts_left: AtomicU32,
    /// Connections cut so far.
    cuts: AtomicU32,
    /// Bytes per second from the server to each client (0: as fast as it goes).
    rate: AtomicU64,
    /// The server is "down": connections are cut, new ones closed at once.
    down: AtomicBool,
    cut_all: tokio::sync::Notify,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let faults = Arc::new(Faults::default());
        let shared = faults.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let faults = shared.clone();
                if faults.down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = pipe(client, server, &faults).await;
                    }
                });
            }
        });
        Ok(Self { addr, faults, accept })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Drop the next `times` connections that receive more than `bytes` bytes from the server.
    pub fn cut_after(&self, bytes: u64, times: u32) {
        self.faults.cut_after.store(bytes, Ordering::SeqCst);
        self.faults.cuts_left.store(times, Ordering::SeqCst);
    }

    /// Slow every connection's server-to-client bytes to `bytes_per_sec` (0: no limit).
    pub fn throttle(&self, bytes_per_sec: u64) {
        self.faults.rate.store(bytes_per_sec, Ordering::SeqCst);
    }

    /// Take the server "down" (every connection cut, new ones closed at once), or bring it back.
    pub fn set_down(&self, down: bool) {
        self.faults.down.store(down, Ordering::SeqCst);
        if down {
            self.faults.cut_all.notify_waiters();
        }
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> u32 {
        self.faults.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pipe(client: TcpStream, server: TcpStream, faults: &Faults) -> std::io::Result<()> {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
    let mut sent = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if faults.down.load(Ordering::SeqCst) {
            break;
        }
        let n = tokio::select! {
            n = server_read.read(&mut buf) => n?,
            () = faults.cut_all.notified() => break,
        };
        if n == 0 {
            break;
        }
        sent += n as u64;
        let limit = faults.cut_after.load(Ordering::SeqCst);
        if limit > 0
            && sent > limit
            && faults.cuts_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1)).is_ok()
        {
            faults.cuts.fetch_add(1, Ordering::SeqCst);
            break;
        }
        client_write.write_all(&buf[..n]).await?;
        let rate = faults.rate.load(Ordering::SeqCst);
        if rate > 0 {
            tokio::time::sleep(std::time::Duration::from_secs_f64(n as f64 / rate as f64)).await;
        }
    }
    upstream.abort();
    Ok(())
}
