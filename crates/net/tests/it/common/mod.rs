//! Helpers shared by the integration tests: real nodes on 127.0.0.1 (port 0) or the memory
//! transport, mDNS off, every wait bounded.

use std::time::Duration;

use anyhow::{Context, bail};
use ruang_net::{
    AudioInbox, Client, Config, Event, Events, Keypair, Multiaddr, PeerId, Transport, Verdict,
};
use tokio::sync::mpsc;

/// Upper bound for "should happen about now" waits.
pub const SOON: Duration = Duration::from_secs(10);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A test config: loopback (or memory) listen addresses, no mDNS.
pub fn config(transport: Transport) -> Config {
    let mut c = Config::new(Keypair::generate_ed25519()).with_transport(transport);
    c.mdns = false;
    c.listen = match transport {
        Transport::QuicAndTcp => vec![quic_local(), tcp_local()],
        Transport::QuicOnly => vec![quic_local()],
        Transport::TcpOnly => vec![tcp_local()],
        Transport::Memory => vec!["/memory/0".parse().unwrap()],
    };
    c
}

pub fn quic_local() -> Multiaddr {
    "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()
}

pub fn tcp_local() -> Multiaddr {
    "/ip4/127.0.0.1/tcp/0".parse().unwrap()
}

pub struct Node {
    pub client: Client,
    pub events: Events,
    pub audio: AudioInbox,
}

impl Node {
    pub fn id(&self) -> PeerId {
        self.client.local_peer_id()
    }
}

pub async fn node(config: Config) -> anyhow::Result<Node> {
    let (client, events, audio) = tokio::time::timeout(SOON, ruang_net::spawn(config))
        .await
        .context("spawn timed out")??;
    Ok(Node {
        client,
        events,
        audio,
    })
}

/// A dialable address of `node` (first of its `/p2p` addresses, preferring `prefer` if given).
pub async fn addr_of(client: &Client, contains: Option<&str>) -> anyhow::Result<Multiaddr> {
    let addrs = client.p2p_addrs().await?;
    let pick = addrs
        .iter()
        .find(|a| contains.is_none_or(|c| a.to_string().contains(c)))
        .cloned();
    pick.with_context(|| format!("no address among {addrs:?}"))
}

/// `a` dials `b`.
pub async fn connect(a: &Client, b: &Client) -> anyhow::Result<()> {
    let addr = addr_of(b, None).await?;
    a.dial(addr).await?;
    Ok(())
}

/// Waits for the first event for which `f` returns `Some`, dropping the others.
pub async fn wait_for<T>(
    events: &mut Events,
    within: Duration,
    mut f: impl FnMut(Event) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .context("timed out waiting for an event")?;
        let Some(event) = event else {
            bail!("event stream ended")
        };
        if let Some(t) = f(event) {
            return Ok(t);
        }
    }
}

/// Polls `check` every 50 ms until it is true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A received gossip message, as a validator task saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub data: Vec<u8>,
    pub at: tokio::time::Instant,
}

/// Spawns a task that answers every gossip message with `verdict(data)` and forwards it.
/// Other events are dropped. Ends with the node.
pub fn auto_validate(
    client: Client,
    mut events: Events,
    verdict: fn(&[u8]) -> Verdict,
) -> mpsc::Receiver<Received> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::Gossip {
                source, id, data, ..
            } = event
            {
                let v = verdict(&data);
                let _ = client.report_validation(id, source, v).await;
                let _ = tx.try_send(Received {
                    data,
                    at: tokio::time::Instant::now(),
                });
            }
        }
    });
    rx
}

pub fn accept_all(_: &[u8]) -> Verdict {
    Verdict::Accept
}

/// Waits until every connection of `client` to `peer` is QUIC (a node moves a TCP connection
/// to QUIC once identify tells it the other has QUIC).
pub async fn wait_on_quic(client: &Client, peer: PeerId) -> anyhow::Result<()> {
    eventually(SOON, "connection moved to QUIC", || async {
        let paths = client.connection_addrs(peer).await.unwrap_or_default();
        !paths.is_empty() && paths.iter().all(|p| p.to_string().contains("quic-v1"))
    })
    .await
}

/// Waits until `client` sees `n` peers subscribed to `topic`.
pub async fn wait_topic_peers(client: &Client, topic: &str, n: usize) -> anyhow::Result<()> {
    eventually(SOON, &format!("{n} peers on {topic}"), || async {
        client
            .topic_peers(topic)
            .await
            .map(|p| p.len() >= n)
            .unwrap_or(false)
    })
    .await
}
