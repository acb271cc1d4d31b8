//! An in-process TCP fault proxy (tokio) to put between the services and the HubSpot sandbox:
//! added latency per forwarded chunk, connection resets (RST, mid-request or mid-response) with a
//! seeded probability, and a blackhole (nothing is forwarded; the connections held during it are
//! reset when it ends, new connections are accepted and ignored).
//!
//! ```no_run
//! # async fn demo() {
//! let proxy = spoke_e2e::fault_proxy::FaultProxy::start("127.0.0.1:8091".parse().unwrap()).await.unwrap();
//! proxy.set_latency_ms(50);
//! proxy.set_reset_per_mille(20);
//! proxy.set_blackhole(true);
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Default)]
struct Knobs {
    latency_ms: AtomicU64,
    reset_per_mille: AtomicU64,
    rng: AtomicU64,
    connections: AtomicU64,
    resets: AtomicU64,
    blackholed: AtomicU64,
}

/// A running proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    knobs: Arc<Knobs>,
    blackhole: watch::Sender<bool>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// What the proxy did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections reset by the reset fault.
    pub resets: u64,
    /// Connections held (then reset) by a blackhole.
    pub blackholed: u64,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let knobs = Arc::new(Knobs {
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            ..Knobs::default()
        });
        let (blackhole, _) = watch::channel(false);
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (knobs, blackhole, stop) = (knobs.clone(), blackhole.clone(), stop.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    knobs.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = client.set_nodelay(true);
                    tokio::spawn(serve(
                        client,
                        upstream,
                        knobs.clone(),
                        blackhole.subscribe(),
                    ));
                }
            })
        };
        Ok(Self {
            addr,
            knobs,
            blackhole,
            stop,
            task,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Delay added before each forwarded chunk (both directions).
    pub fn set_latency_ms(&self, ms: u64) {
        self.knobs.latency_ms.store(ms, Ordering::Relaxed);
    }

    /// Chance per forwarded chunk, in 1/1000, that the connection is reset (both sides get an RST).
    pub fn set_reset_per_mille(&self, p: u64) {
        self.knobs
            .reset_per_mille
            .store(p.min(1000), Ordering::Relaxed);
    }

    /// Reseeds the reset dice.
    pub fn seed(&self, seed: u64) {
        self.knobs.rng.store(seed | 1, Ordering::Relaxed);
    }

    /// Starts (`true`) or ends a blackhole. Ending it resets every connection it held.
    pub fn set_blackhole(&self, on: bool) {
        let _ = self.blackhole.send_replace(on);
    }

    /// Counters so far.
    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            connections: self.knobs.connections.load(Ordering::Relaxed),
            resets: self.knobs.resets.load(Ordering::Relaxed),
            blackholed: self.knobs.blackholed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

impl Knobs {
    /// xorshift64*: deterministic for a seed, shared by every connection.
    fn roll(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % 1000
    }

    fn should_reset(&self) -> bool {
        let p = self.reset_per_mille.load(Ordering::Relaxed);
        p > 0 && self.roll() < p
    }
}

/// Closes with an RST (SO_LINGER 0) instead of a FIN.
// SO_LINGER 0 never blocks on drop (tokio's deprecation is about non-zero lingers).
#[allow(deprecated)]
fn rst(stream: TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn hold(client: TcpStream, knobs: &Knobs, mut blackhole: watch::Receiver<bool>) {
    knobs.blackholed.fetch_add(1, Ordering::Relaxed);
    let _ = blackhole.wait_for(|on| !*on).await;
    rst(client);
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    knobs: Arc<Knobs>,
    mut blackhole: watch::Receiver<bool>,
) {
    if *blackhole.borrow() {
        return hold(client, &knobs, blackhole).await;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return rst(client);
    };
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut cbuf = vec![0u8; 64 * 1024];
    let mut sbuf = vec![0u8; 64 * 1024];
    // One loop owns both directions so a fault can end both at once.
    let outcome = loop {
        let (n, to_server) = tokio::select! {
            r = cr.read(&mut cbuf) => match r { Ok(0) | Err(_) => break Outcome::Closed, Ok(n) => (n, true) },
            r = sr.read(&mut sbuf) => match r { Ok(0) | Err(_) => break Outcome::Closed, Ok(n) => (n, false) },
            _ = blackhole.wait_for(|on| *on) => break Outcome::Blackhole,
        };
        let latency = knobs.latency_ms.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        if knobs.should_reset() {
            knobs.resets.fetch_add(1, Ordering::Relaxed);
            break Outcome::Reset;
        }
        let written = if to_server {
            sw.write_all(&cbuf[..n]).await
        } else {
            cw.write_all(&sbuf[..n]).await
        };
        if written.is_err() {
            break Outcome::Closed;
        }
    };
    let (client, server) = match (cr.reunite(cw), sr.reunite(sw)) {
        (Ok(c), Ok(s)) => (c, s),
        _ => return,
    };
    match outcome {
        Outcome::Closed => {
            let (mut c, mut s) = (client, server);
            let _ = c.shutdown().await;
            let _ = s.shutdown().await;
        }
        Outcome::Reset => {
            rst(server);
            rst(client);
        }
        Outcome::Blackhole => {
            rst(server);
            hold(client, &knobs, blackhole).await;
        }
    }
}

enum Outcome {
    Closed,
    Reset,
    Blackhole,
}
