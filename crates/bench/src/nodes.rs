//! In-process nodes (the real `ruang-node` code) for the scenarios that run many of them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ruang_audio::sink::{Sink, SinkError};
use ruang_net::{Multiaddr, Transport, multiaddr::Protocol};
use ruang_node::{HostOptions, Node, NodeEvent, NodeHandle};
use ruang_proto::room::Info;
use ruang_proto::{Identity, Ticket};
use tokio::sync::broadcast;

/// A node on loopback (QUIC or TCP, or the memory transport), mDNS off.
pub async fn node(
    name: &str,
    transport: Transport,
    extra: impl FnOnce(ruang_node::Builder) -> ruang_node::Builder,
) -> Result<NodeHandle> {
    let identity = Identity::generate(&mut rand::rng());
    let listen: Multiaddr = match transport {
        Transport::TcpOnly => "/ip4/127.0.0.1/tcp/0".parse()?,
        Transport::Memory => format!("/memory/{}", rand::random::<u64>() >> 1).parse()?,
        _ => "/ip4/127.0.0.1/udp/0/quic-v1".parse()?,
    };
    let builder = Node::builder(identity)
        .name(name)
        .mdns(false)
        .transport(transport)
        .listen(listen);
    let handle = tokio::time::timeout(Duration::from_secs(20), extra(builder).spawn())
        .await
        .context("spawning a node timed out")??;
    Ok(handle)
}

/// Options for a public room titled `title`.
pub fn room(title: &str) -> HostOptions {
    HostOptions {
        info: Info {
            title: title.into(),
            ..Info::default()
        },
        ..HostOptions::default()
    }
}

/// Waits for an event for which `pred` returns `Some`.
pub async fn wait_for<T>(
    events: &mut broadcast::Receiver<NodeEvent>,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&NodeEvent) -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Err(_) => bail!("timed out after {timeout:?} waiting for {what}"),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => bail!("event stream ended while waiting for {what}: {e}"),
            Ok(Ok(ev)) => {
                if let Some(t) = pred(&ev) {
                    return Ok(t);
                }
            }
        }
    }
}

/// A copy of `ticket` whose only address is `relay` (with the host's `/p2p/<id>`), so a
/// joiner dials the relay and the peer-id check still holds.
pub fn ticket_via(ticket: &Ticket, relay: SocketAddr) -> Result<Ticket> {
    let host_peer = ticket
        .addresses
        .iter()
        .filter_map(|a| Multiaddr::try_from(a.clone()).ok())
        .find_map(|a| match a.iter().last() {
            Some(Protocol::P2p(p)) => Some(p),
            _ => None,
        })
        .context("the ticket has no /p2p/ address")?;
    let addr: Multiaddr = format!(
        "/ip4/{}/udp/{}/quic-v1/p2p/{host_peer}",
        relay.ip(),
        relay.port()
    )
    .parse()?;
    let mut t = ticket.clone();
    t.addresses = vec![addr.to_vec()];
    Ok(t)
}

/// The first `/ip4/.../udp/<port>/quic-v1` address in a list of multiaddr strings.
pub fn quic_socket(addrs: &[String]) -> Option<SocketAddr> {
    addrs.iter().find_map(|a| {
        let m: Multiaddr = a.parse().ok()?;
        let mut ip = None;
        let mut port = None;
        let mut quic = false;
        for p in m.iter() {
            match p {
                Protocol::Ip4(v) => ip = Some(std::net::IpAddr::V4(v)),
                Protocol::Udp(v) => port = Some(v),
                Protocol::QuicV1 => quic = true,
                _ => {}
            }
        }
        (quic).then_some(SocketAddr::new(ip?, port?))
    })
}

/// The `listen` addresses of a `ruang --json` node's `ready` event.
pub fn listen_addrs(ready: &serde_json::Value) -> Vec<String> {
    ready["listen"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The port of the first address in `addrs` (a multiaddr string) that has one.
pub fn first_port(addrs: &[String]) -> Option<u16> {
    addrs.iter().find_map(|a| {
        let m: Multiaddr = a.parse().ok()?;
        m.iter().find_map(|p| match p {
            Protocol::Udp(v) | Protocol::Tcp(v) => Some(v),
            _ => None,
        })
    })
}

/// A sink that keeps what it is given in memory (bounded), shared with the bench.
#[derive(Clone, Default)]
pub struct SharedSink(pub Arc<Mutex<Vec<f32>>>);

/// Most samples a [`SharedSink`] keeps (ten minutes).
pub const SHARED_SINK_MAX: usize = 48_000 * 600;

impl Sink for SharedSink {
    fn push_frame(&mut self, pcm: &[f32]) -> Result<(), SinkError> {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < SHARED_SINK_MAX {
            v.extend_from_slice(pcm);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

impl SharedSink {
    /// The samples so far.
    pub fn samples(&self) -> Vec<f32> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A sink that discards audio.
pub struct NullSink;

impl Sink for NullSink {
    fn push_frame(&mut self, _pcm: &[f32]) -> Result<(), SinkError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
