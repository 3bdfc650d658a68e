//! A fault-injecting TCP proxy between SDK clients and the server: it counts
//! connection attempts and can drop, stall or half-open live connections, and be
//! pointed at a new upstream (a restarted server listens on a new port).
//!
//! - **drop**: both sockets close at once, as when a network path dies loudly.
//! - **stall**: bytes stop flowing both ways but the sockets stay open (a
//!   frozen path); they flow again after [`Proxy::resume`], or never.
//! - **half-open**: the server's side is closed while the client's stays open and
//!   silent (a peer gone without a FIN): only a liveness timeout notices.
//! - **deaf**: the client's bytes still reach the server, but nothing comes
//!   back (an answer lost on the way), until the connection is dropped.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::watch,
};

/// What a live connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Stall,
    HalfOpen,
    Drop,
    Deaf,
}

impl Fault {
    /// Whether bytes stop in this direction.
    fn stalls(self, to_client: bool) -> bool {
        self == Fault::Stall || (self == Fault::Deaf && to_client)
    }
}

struct Shared {
    upstream: Mutex<SocketAddr>,
    attempts: AtomicU64,
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, watch::Sender<Fault>>>,
}

/// The proxy; stops when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.drop_all();
    }
}

impl Proxy {
    /// Listens on `127.0.0.1:0`, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            attempts: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            live: Mutex::new(HashMap::new()),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepting.attempts.fetch_add(1, Ordering::SeqCst);
                let shared = accepting.clone();
                tokio::spawn(async move { serve(shared, client).await });
            }
        });
        Proxy { addr, shared, task }
    }

    /// The server URL through the proxy (every SDK transport accepts it).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where new connections go from now on.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.shared.upstream.lock().unwrap() = upstream;
    }

    /// How many connections clients opened to the proxy so far.
    pub fn attempts(&self) -> u64 {
        self.shared.attempts.load(Ordering::SeqCst)
    }

    /// How many connections are live now.
    pub fn live(&self) -> usize {
        self.shared.live.lock().unwrap().len()
    }

    fn set(&self, pick: impl FnOnce(&[u64]) -> Vec<u64>, fault: Fault) -> usize {
        let live = self.shared.live.lock().unwrap();
        let mut ids: Vec<u64> = live.keys().copied().collect();
        ids.sort_unstable();
        let chosen = pick(&ids);
        for id in &chosen {
            if let Some(ctl) = live.get(id) {
                let _ = ctl.send(fault);
            }
        }
        chosen.len()
    }

    /// Applies `fault` to the live connection at `index` (modulo the count);
    /// returns false when none is live.
    pub fn fault_one(&self, index: usize, fault: Fault) -> bool {
        self.set(
            |ids| {
                ids.get(index % ids.len().max(1))
                    .copied()
                    .into_iter()
                    .collect()
            },
            fault,
        ) > 0
    }

    pub fn drop_all(&self) -> usize {
        self.set(<[u64]>::to_vec, Fault::Drop)
    }

    pub fn stall_all(&self) -> usize {
        self.set(<[u64]>::to_vec, Fault::Stall)
    }

    /// Answers stop reaching clients; what they send still goes through.
    pub fn deafen_all(&self) -> usize {
        self.set(<[u64]>::to_vec, Fault::Deaf)
    }

    pub fn half_open_all(&self) -> usize {
        self.set(<[u64]>::to_vec, Fault::HalfOpen)
    }

    /// Lets stalled connections flow again.
    pub fn resume(&self) -> usize {
        self.set(<[u64]>::to_vec, Fault::Pass)
    }
}

async fn serve(shared: Arc<Shared>, client: TcpStream) {
    let upstream = *shared.upstream.lock().unwrap();
    let Ok(server) = TcpStream::connect(upstream).await else {
        return; // the server is down: the client sees its connection close
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let (ctl, rx) = watch::channel(Fault::Pass);
    shared.live.lock().unwrap().insert(id, ctl);
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    let up = pump(client_r, Some(server_w), rx.clone(), false);
    let down = pump(server_r, Some(client_w), rx, true);
    // Either direction ending ends the connection (both sockets close).
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
    shared.live.lock().unwrap().remove(&id);
}

/// Copies `from` to `to` as the fault allows. `to_client` marks the direction
/// that a half-open connection silences (and whose end it hides).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: Option<OwnedWriteHalf>,
    mut ctl: watch::Receiver<Fault>,
    to_client: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let fault = *ctl.borrow_and_update();
        match fault {
            Fault::Drop => return,
            Fault::HalfOpen if to_client => {
                // Close the server's side, keep the client's open and silent.
                drop(from);
                while ctl.changed().await.is_ok() {
                    if *ctl.borrow() == Fault::Drop {
                        return;
                    }
                }
                return;
            }
            Fault::HalfOpen => {
                // Whatever the client sends goes nowhere.
                to = None;
            }
            fault if fault.stalls(to_client) => {
                if ctl.changed().await.is_err() {
                    return;
                }
                continue;
            }
            _ => {}
        }
        let n = tokio::select! {
            n = from.read(&mut buf) => n,
            changed = ctl.changed() => {
                if changed.is_err() { return; }
                continue;
            }
        };
        let n = match n {
            Ok(0) | Err(_) => {
                if to_client && *ctl.borrow() == Fault::HalfOpen {
                    continue; // hide the server's end
                }
                return;
            }
            Ok(n) => n,
        };
        // Data read just as a stall began is held until the stall ends.
        while ctl.borrow().stalls(to_client) {
            if ctl.changed().await.is_err() {
                return;
            }
        }
        match *ctl.borrow() {
            Fault::Drop => return,
            Fault::HalfOpen if to_client => continue,
            _ => {}
        }
        if let Some(w) = to.as_mut() {
            if w.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
}
