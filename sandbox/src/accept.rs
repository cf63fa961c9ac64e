//! The sandbox's one accept loop (its Lambda APIs port, the embedded CloudWatch, the CBOR-to-JSON
//! proxy): at most [`MAX_CONNECTIONS`] connections at once (more wait in the accept queue), an
//! accept error logged (once at `warn`, then at `debug`) and retried after a pause that doubles
//! from 5 ms to 1 s, one task per connection in a set (aborting the loop aborts them all), and a
//! connection task that panics logged with the listener's name, the loop going on.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Connections one listener serves at once: far more than a sandbox's processes or a benchmark's
/// clients open.
pub(crate) const MAX_CONNECTIONS: usize = 1_024;
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts on `listener` until the task is aborted; `on_accept` turns each connection into its
/// task, or `None` to close it at once.
pub(crate) async fn accept_loop<F, Fut>(listener: TcpListener, name: &'static str, mut on_accept: F)
where
    F: FnMut(TcpStream, SocketAddr) -> Option<Fut>,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    let (mut backoff, mut errors) = (FIRST_BACKOFF, 0u64);
    loop {
        tokio::select! {
            accepted = accept(&listener, &permits) => {
                let (stream, peer, permit) = match accepted {
                    Ok(x) => x,
                    Err(error) => {
                        errors += 1;
                        if errors == 1 {
                            tracing::warn!(%error, listener = name, "accept failed; retrying");
                        } else {
                            tracing::debug!(%error, listener = name, errors, "accept failed; retrying");
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                };
                backoff = FIRST_BACKOFF;
                if let Some(task) = on_accept(stream, peer) {
                    conns.spawn(async move {
                        task.await;
                        drop(permit);
                    });
                }
            }
            Some(joined) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = joined {
                    if e.is_panic() {
                        tracing::error!(listener = name, "a connection task panicked; the listener goes on");
                    }
                }
            }
        }
    }
}

async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> std::io::Result<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let permit = Arc::clone(permits).acquire_owned().await.map_err(std::io::Error::other)?;
    let (stream, peer) = listener.accept().await?;
    Ok((stream, peer, permit))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connection task that panics does not end the loop; a refused connection is closed at once.
    #[tokio::test]
    async fn goes_on_after_a_panic_and_closes_refused_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut n = 0;
        let task = tokio::spawn(accept_loop(listener, "test", move |mut stream: TcpStream, _| {
            n += 1;
            let nth = n;
            (nth != 2).then_some(async move {
                assert!(nth != 1, "the first connection's task panics");
                let _ = stream.write_all(b"served").await;
            })
        }));
        for expected in ["", "", "served"] {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            let _ = c.read_to_end(&mut got).await;
            assert_eq!(String::from_utf8_lossy(&got), expected);
        }
        task.abort();
    }
}
