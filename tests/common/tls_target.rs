//! A bare TLS server for `tls://` checks: on 127.0.0.1, it completes a
//! handshake with the certificate of a given [`rustls::ServerConfig`] (see
//! [`super::ca::TestCa::server_config_with`]) and closes the connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::task::JoinSet;

/// A running TLS listener; stopped (with its connections) when dropped.
pub struct TlsTarget {
    /// Where it listens.
    pub addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsTarget {
    /// Starts a listener serving `config`.
    pub async fn start(config: Arc<rustls::ServerConfig>) -> TlsTarget {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let handshakes = Arc::new(AtomicUsize::new(0));
        let done = Arc::clone(&handshakes);
        let task = tokio::spawn(async move {
            // Owned here, so aborting the accept loop ends them too.
            let mut connections = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    // Out of descriptors, say: let some close first.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                while connections.try_join_next().is_some() {}
                let acceptor = acceptor.clone();
                let done = Arc::clone(&done);
                connections.spawn(async move {
                    let shake = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp));
                    if let Ok(Ok(mut stream)) = shake.await {
                        done.fetch_add(1, Ordering::SeqCst);
                        use tokio::io::AsyncWriteExt;
                        let _ = stream.shutdown().await;
                    }
                });
            }
        });
        TlsTarget {
            addr,
            handshakes,
            task,
        }
    }

    /// `tls://HOST:PORT` for this listener, under the name `host` (the
    /// name the check sends as SNI and verifies; `localhost` and
    /// `127.0.0.1` both reach it).
    pub fn url(&self, host: &str) -> String {
        format!("tls://{host}:{}", self.addr.port())
    }

    /// Handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}
