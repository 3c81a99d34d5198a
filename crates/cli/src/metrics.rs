//! `ruang node --metrics ADDR`: Prometheus metrics over HTTP, for operators.
//!
//! libp2p records its own (connections, relay reservations and circuits, gossip messages,
//! identify, Kademlia, ping, hole punching: `libp2p_*`) into the registry the node is built
//! with; [`Gauges`] adds ruang's (`ruang_*`: connected peers, rooms in the directory, audio
//! links), refreshed by the caller. [`serve`] answers `GET /metrics` in the OpenMetrics text
//! format and nothing else, with a few connections at a time, a bounded request and a
//! deadline, so a scraper (or anyone who can reach the port) cannot tie the node up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use ruang_net::Registry;
use ruang_net::prometheus_client::encoding::text::encode;
use ruang_net::prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Scrapes answered at once; more wait for a slot.
const MAX_SCRAPES: usize = 4;

/// Longest request head read.
const MAX_REQUEST: usize = 8 * 1024;

/// How long one scrape may take, reading and writing.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// ruang's own gauges, registered beside libp2p's.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    /// Peers this node has a connection to.
    pub connected_peers: Gauge,
    /// Rooms in this node's directory.
    pub rooms: Gauge,
    /// Audio links this node streams to.
    pub audio_links: Gauge,
}

/// A registry for the node to record into, with ruang's gauges registered.
pub fn registry() -> (Arc<Mutex<Registry>>, Gauges) {
    let mut registry = Registry::with_prefix("ruang");
    let gauges = Gauges::default();
    registry.register(
        "connected_peers",
        "Peers this node has a connection to",
        gauges.connected_peers.clone(),
    );
    registry.register(
        "directory_rooms",
        "Rooms in this node's directory",
        gauges.rooms.clone(),
    );
    registry.register(
        "audio_links",
        "Audio links this node streams to",
        gauges.audio_links.clone(),
    );
    (Arc::new(Mutex::new(registry)), gauges)
}

/// The registry in the OpenMetrics text format.
pub fn render(registry: &Mutex<Registry>) -> Result<String> {
    let mut out = String::new();
    let registry = registry.lock().unwrap_or_else(|p| p.into_inner());
    encode(&mut out, &registry).context("encoding the metrics")?;
    Ok(out)
}

/// Answers scrapes on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, registry: Arc<Mutex<Registry>>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = tokio::time::timeout(SCRAPE_TIMEOUT, answer(stream, &registry)).await {
                tracing::debug!("metrics: scrape timed out: {e}");
            }
        });
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, registry: &Mutex<Registry>) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_REQUEST {
            let _ = respond(&mut stream, "431 Request Header Fields Too Large", "", "").await;
            return;
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let _ = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => match render(registry) {
            Ok(body) => {
                respond(
                    &mut stream,
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    &body,
                )
                .await
            }
            Err(e) => {
                respond(
                    &mut stream,
                    "500 Internal Server Error",
                    "text/plain",
                    &e.to_string(),
                )
                .await
            }
        },
        (Some(b"GET"), _) => {
            respond(&mut stream, "404 Not Found", "text/plain", "try /metrics\n").await
        }
        _ => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                "GET only\n",
            )
            .await
        }
    };
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        // A refused request may be reset before its answer is read: the text is then empty.
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn scrapes_get_the_gauges_and_other_requests_get_errors() {
        let (registry, gauges) = registry();
        gauges.rooms.set(3);
        gauges.connected_peers.set(7);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, registry));
        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(ok.contains("ruang_directory_rooms 3"), "{ok}");
        assert!(ok.contains("ruang_connected_peers 7"), "{ok}");
        assert!(ok.trim_end().ends_with("# EOF"), "{ok}");
        let missing = get(addr, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        let refused = get(addr, &huge).await;
        assert!(!refused.contains("200 OK"), "{refused}");
        // The node still answers afterwards.
        let again = get(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(again.starts_with("HTTP/1.1 200 OK"), "{again}");
        server.abort();
    }
}
