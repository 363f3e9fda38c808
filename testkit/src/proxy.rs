//! A loopback TCP proxy that can make what is behind it unreachable or
//! unresponsive on demand: the fault tests put it between a service and its
//! database, its broker or another service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Where connections go; read as each connection opens.
type Target = Arc<std::sync::Mutex<Option<SocketAddr>>>;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwards both ways.
    None,
    /// Cuts open connections and closes new ones at once: the peer sees a
    /// dependency that is down.
    Refuse,
    /// Keeps connections open and forwards nothing: the peer sees a
    /// dependency that hangs, and only its own timeout helps.
    Hang,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    target: Target,
    fault: watch::Sender<Fault>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0", Some(target)).await
    }

    /// A listener that accepts connections and never answers (an OTLP
    /// collector that hangs).
    pub async fn black_hole() -> std::io::Result<Self> {
        let proxy = Self::start_on("127.0.0.1:0", None).await?;
        proxy.set(Fault::Hang);
        Ok(proxy)
    }

    /// Listens on `listen`, forwarding to `target` (None: hang every connection).
    pub async fn start_on(listen: &str, target: Option<SocketAddr>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (fault, watcher) = watch::channel(Fault::None);
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let target: Target = Arc::new(std::sync::Mutex::new(target));
        let targets = target.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let watcher = watcher.clone();
                let target = *targets.lock().unwrap_or_else(|e| e.into_inner());
                tokio::spawn(connection(client, target, watcher));
            }
        });
        Ok(Self {
            addr,
            target,
            fault,
            accepted,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends later connections to `target` (a proxy can listen before what
    /// it fronts exists, as a broker that must advertise the proxy's port).
    pub fn forward_to(&self, target: SocketAddr) {
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = Some(target);
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // Open connections end when their watch sender is gone.
    }
}

async fn connection(
    mut client: TcpStream,
    target: Option<SocketAddr>,
    mut fault: watch::Receiver<Fault>,
) {
    loop {
        let now = *fault.borrow_and_update();
        match (now, target) {
            (Fault::Refuse, _) => return,
            (Fault::Hang, _) | (Fault::None, None) => {
                // Hold the connection, read nothing, answer nothing, until the
                // fault changes (then close: the peer reconnects afresh).
                if fault.changed().await.is_err() {
                    return;
                }
                if target.is_none() || *fault.borrow() != Fault::Hang {
                    return;
                }
            }
            (Fault::None, Some(target)) => {
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => return,
                    changed = fault.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        // Any fault cuts a forwarded connection; Hang keeps the
                        // client's socket open without answering.
                        drop(upstream);
                        if *fault.borrow() == Fault::Hang {
                            let _ = fault.changed().await;
                        }
                        return;
                    }
                }
            }
        }
    }
}

/// A loopback TCP proxy that keeps what clients sent through it (up to
/// 4 MiB), so a test can read the headers one service sent another.
pub struct Recorder {
    addr: SocketAddr,
    target: Target,
    sent: Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

const RECORDED_BYTES: usize = 4 << 20;

impl Recorder {
    /// Listens on a free loopback port; connections wait (at most 10 s) for
    /// [`Recorder::forward_to`].
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let target: Target = Arc::new(std::sync::Mutex::new(None));
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (targets, record) = (target.clone(), sent.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (targets, record) = (targets.clone(), record.clone());
                tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    let to = loop {
                        if let Some(to) = *targets.lock().unwrap_or_else(|e| e.into_inner()) {
                            break to;
                        }
                        if started.elapsed() > std::time::Duration::from_secs(10) {
                            return;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    };
                    let Ok(upstream) = TcpStream::connect(to).await else {
                        return;
                    };
                    relay_recording(client, upstream, record).await;
                });
            }
        });
        Ok(Recorder {
            addr,
            target,
            sent,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn forward_to(&self, target: SocketAddr) {
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = Some(target);
    }

    /// What clients sent so far, as text (invalid UTF-8 replaced).
    pub fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay_recording(
    client: TcpStream,
    upstream: TcpStream,
    record: Arc<std::sync::Mutex<Vec<u8>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let answers = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                {
                    let mut kept = record.lock().unwrap_or_else(|e| e.into_inner());
                    let room = RECORDED_BYTES.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                if upstream_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = upstream_write.shutdown().await;
    let _ = answers.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> Option<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(buf.to_vec())
    }

    #[tokio::test]
    async fn forwards_refuses_hangs_and_recovers() {
        let proxy = Proxy::start(echo().await).await.unwrap();
        assert_eq!(
            round_trip(proxy.addr()).await.as_deref(),
            Some(&b"ping"[..])
        );

        proxy.set(Fault::Refuse);
        assert_eq!(round_trip(proxy.addr()).await, None);

        proxy.set(Fault::Hang);
        let started = std::time::Instant::now();
        assert_eq!(round_trip(proxy.addr()).await, None);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "a hang waits"
        );

        proxy.set(Fault::None);
        assert_eq!(
            round_trip(proxy.addr()).await.as_deref(),
            Some(&b"ping"[..])
        );
        assert!(proxy.accepted() >= 4);
    }

    #[tokio::test]
    async fn an_open_connection_is_cut_when_the_fault_starts() {
        let proxy = Proxy::start(echo().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        proxy.set(Fault::Refuse);
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }

    #[tokio::test]
    async fn a_black_hole_accepts_and_never_answers() {
        let hole = Proxy::black_hole().await.unwrap();
        assert_eq!(round_trip(hole.addr()).await, None);
        assert_eq!(hole.accepted(), 1);
    }
}
