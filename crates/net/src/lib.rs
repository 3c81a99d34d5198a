//! # ruang-net: the libp2p layer of ruang
//!
//! Moves opaque bytes between ruang nodes: gossip payloads (directory announcements, room
//! events), sync requests and responses, and audio frames. It knows nothing of rooms, events or
//! Opus: the node above it (`ruang-node`) verifies, decides and calls back with verdicts
//! (DESIGN.md §1: `net` depends on neither `proto` nor `audio`).
//!
//! # Run loop
//!
//! [`spawn`] builds a libp2p swarm and starts one task, the event loop, that owns it (the
//! `Client` / `EventLoop` pattern of rust-libp2p's `file-sharing` example). It returns:
//!
//! - a [`Client`]: cheap to clone; each call sends a command over a bounded queue and awaits a
//!   oneshot reply under a timeout, so no call can hang ([`limits`] has every bound);
//! - [`Events`]: the control plane ([`Event`]): connections, gossip awaiting validation, sync
//!   requests, audio streams opening and closing, requests for our audio, discovery.
//!   Backpressured, never dropped;
//! - an [`AudioInbox`]: the audio plane ([`AudioIn`]), a separate bounded queue read by
//!   per-stream tasks that drop (and count) frames rather than wait when the node is slow.
//!
//! The event loop handles commands before new network work and never awaits the node: when
//! [`Events`] is full it parks a few events and then stops polling the swarm until the node
//! reads again.
//!
//! # Protocols
//!
//! - Transports: QUIC and TCP (Noise + Yamux) with DNS and WebSocket over TCP (`/ws`, or
//!   `/tls/ws` with [`WebSocketTls`]), or QUIC only, TCP only, or the in-memory transport for
//!   tests ([`Transport`]). Substream negotiation is multistream-select
//!   `V1Lazy` (one round trip saved per stream).
//! - identify, ping, mDNS (switchable), Kademlia on `/ruang/kad/1.0.0` (server mode until
//!   [`Client::set_dht_server`] says otherwise, bootstrap peers, periodic refresh), AutoNAT v2
//!   client and server, circuit relay v2 client, relay server when [`Config::relay_server`],
//!   DCUtR hole punching, a block list, connection limits.
//! - gossipsub: anonymous (no gossipsub signatures: the payloads are signed ruang-proto
//!   envelopes the node verifies once per message), content-addressed ids, [`limits::MAX_GOSSIP_SIZE`], topics
//!   under `ruang/`, `validate_messages()` — the node reports a [`Verdict`] for every message
//!   and only accepted ones are forwarded; rejected ones lower the sender's peer score until it
//!   is graylisted.
//! - `/ruang/sync/1`: request-response of length-prefixed bytes (64 KiB / 4 MiB).
//! - `/ruang/audio/1` over libp2p-stream: long-lived streams per (speaker, hop), [`AUDIO_LANES`](crate::limits::AUDIO_LANES) lanes striped round-robin, see
//!   [`AudioLink`] and the [`audio`] module doc for the wire format.
//! - `/ruang/listen/1` over libp2p-stream: a listener's request for a speaker's audio, held
//!   open for as long as it wants it ([`Client::ask_for_audio`], [`AudioRequest`]); a speaker
//!   opens [`AudioLink`]s only to peers that asked.
//!
//! # Threads and blocking
//!
//! Everything runs on the tokio runtime [`spawn`] was called on: the event loop, one task per
//! [`AudioLink`] and [`AudioRequest`], one acceptor task each for inbound audio streams and
//! audio requests, and one task per inbound stream. No call
//! blocks a thread. `Client` methods are `async` and bounded by [`limits::CALL_TIMEOUT`] (or
//! the operation's own timeout); [`AudioLink::push`], [`Client::open_audio`],
//! [`Client::close_audio_from`] and the stats getters are synchronous and return at once, so
//! they can be used from audio threads.
//!
//! # Time
//!
//! Real time (tokio). Timeouts are constants in [`limits`]. Tests run real nodes on
//! 127.0.0.1 or the memory transport, every await under a timeout.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), ruang_net::NetError> {
//! use ruang_net::{Config, Event, Keypair, Transport, Verdict};
//! let mut config = Config::new(Keypair::generate_ed25519()).with_transport(Transport::QuicOnly);
//! config.mdns = false;
//! let (client, mut events, _audio) = ruang_net::spawn(config).await?;
//! client.subscribe("ruang/directory/1").await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Gossip { source, id, data, .. } = event {
//!         let verdict = if data.is_empty() { Verdict::Reject } else { Verdict::Accept };
//!         client.report_validation(id, source, verdict).await?;
//!     }
//! }
//! # Ok(()) }
//! ```

mod addr_book;
pub mod audio;
mod behaviour;
mod client;
mod config;
mod error;
mod event;
mod event_loop;
mod ip_budget;
pub mod limits;
mod privacy;
mod sync;
mod tls;
mod transport;

use std::{collections::HashMap, sync::Arc};

/// The Prometheus registry [`Config::metrics`] records into (prometheus-client's), for
/// registering one's own metrics beside libp2p's and encoding them.
pub use libp2p::metrics::Registry;
pub use libp2p::{
    Multiaddr, PeerId, Stream, StreamProtocol, gossipsub::MessageId, identity::Keypair, multiaddr,
};
/// prometheus-client, the version libp2p records with: metric types and the text encoder.
pub use prometheus_client;

pub use audio::{
    AUDIO_PROTOCOL, AudioIn, AudioInStats, AudioInbox, AudioLink, AudioLinkStats, AudioRequest,
    AudioRequestStats, REFUSED_RETRY_MAX, REFUSED_RETRY_MIN, REQUEST_PROTOCOL,
};
pub use behaviour::{IDENTIFY_PROTOCOL, KAD_PROTOCOL};
pub use client::{Client, with_peer};
pub use config::{Config, DEFAULT_AUTO_RELAYS, DEFAULT_IDLE_CONNECTION_TIMEOUT, Transport};
pub use error::NetError;
pub use event::{AutonatServed, Event, Events, SyncReply, Verdict};
pub use sync::SYNC_PROTOCOL;
pub use tls::WebSocketTls;
pub use transport::connection_rank;

use tokio::sync::mpsc;

use crate::{
    audio::inbound::{InboundShared, accept_loop},
    client::Command,
    event_loop::EventLoop,
    limits::{AUDIO_INBOX_CAP, COMMAND_QUEUE_CAP, EVENT_QUEUE_CAP, LISTEN_TIMEOUT},
};

/// Builds the swarm, starts listening, dials the bootstrap peers and spawns the event loop on
/// the current tokio runtime (call it from within one). Returns once every listen address is
/// bound, or [`NetError::ListenFailed`] naming the one that is not (port in use, say).
pub async fn spawn(config: Config) -> Result<(Client, Events, AudioInbox), NetError> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| NetError::Transport("ruang_net::spawn needs a tokio runtime".into()))?;
    let mut swarm = transport::build_swarm(&config).await?;
    let local_peer_id = *swarm.local_peer_id();

    let mut unbound = HashMap::new();
    // Hiding our IP: no listener at all (peers reach us through relay circuits only).
    let listen: &[Multiaddr] = if config.hide_ip { &[] } else { &config.listen };
    for addr in listen {
        check_tcp_port_free(addr)?;
        if addr.iter().any(|p| p == multiaddr::Protocol::Tls) && !config.websocket_tls.serves() {
            return Err(NetError::ListenFailed {
                addr: addr.clone(),
                reason: "listening on /tls/ws needs a certificate and its key".into(),
            });
        }
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::ListenFailed {
                addr: addr.clone(),
                reason: listen_reason(&e),
            })?;
        unbound.insert(id, addr.clone());
    }
    for addr in config.external_addrs.iter().filter(|_| !config.hide_ip) {
        swarm.add_external_address(addr.clone());
    }

    let mut control = swarm.behaviour().stream.new_control();
    let incoming = control
        .accept(AUDIO_PROTOCOL)
        .map_err(|e| NetError::Transport(e.to_string()))?;
    let requests = control
        .accept(REQUEST_PROTOCOL)
        .map_err(|e| NetError::Transport(e.to_string()))?;

    let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE_CAP);
    let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE_CAP);
    let (audio_tx, audio_rx) = mpsc::channel(AUDIO_INBOX_CAP);
    let inbound = Arc::new(InboundShared::default());

    let audio_acceptor = runtime.spawn(accept_loop(
        incoming,
        inbound.clone(),
        audio_tx,
        event_tx.clone(),
    ));
    let request_acceptor = runtime.spawn(audio::request::accept_loop(
        requests,
        inbound.clone(),
        event_tx.clone(),
    ));

    let policy = event_loop::Policy {
        transport: config.transport,
        listen_is_external: config.relay_server && config.external_addrs.is_empty(),
        trim: !config.relay_server,
        auto_relays: if config.relay_server && !config.hide_ip {
            0
        } else {
            config.auto_relays
        },
        hide_ip: config.hide_ip,
    };
    let metrics = config.metrics.as_ref().map(|registry| {
        let mut registry = registry.lock().unwrap_or_else(|p| p.into_inner());
        libp2p::metrics::Metrics::new(&mut registry)
    });
    let event_loop = EventLoop::new(
        swarm,
        command_rx,
        event_tx,
        policy,
        unbound,
        inbound.clone(),
        vec![audio_acceptor, request_acceptor],
    )
    .with_metrics(metrics);
    runtime.spawn(event_loop.run());

    let client = Client {
        commands: command_tx,
        local_peer_id,
        control,
        inbound: inbound.clone(),
        runtime,
    };
    let events = Events { rx: event_rx };
    let audio = AudioInbox {
        rx: audio_rx,
        shared: inbound,
    };

    // Listening first, so the caller can hand out addresses as soon as we return.
    let (tx, rx) = tokio::sync::oneshot::channel();
    client
        .commands
        .send(Command::WaitListening(tx))
        .await
        .map_err(|_| NetError::Shutdown)?;
    match tokio::time::timeout(LISTEN_TIMEOUT, rx).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => {
            client.shutdown().await;
            return Err(e);
        }
        Ok(Err(_)) => return Err(NetError::Shutdown),
        Err(_) => {
            client.shutdown().await;
            return Err(NetError::Timeout {
                what: "binding the listen addresses",
                after: LISTEN_TIMEOUT,
            });
        }
    }

    // Bootstrap: dial each peer (in the background; failures are logged, Kademlia retries).
    for addr in config.bootstrap {
        let c = client.clone();
        tokio::spawn(async move {
            if let Err(e) = c.dial(addr.clone()).await {
                tracing::warn!(%addr, error = %e, "bootstrap peer unreachable");
            }
        });
    }
    Ok((client, events, audio))
}

/// libp2p's TCP listeners set `SO_REUSEPORT`, so a second node on the same fixed port would
/// bind without error and the kernel would split incoming connections between the two. Probe
/// the port with a plain socket first so the user hears "address in use" instead.
fn check_tcp_port_free(addr: &Multiaddr) -> Result<(), NetError> {
    use libp2p::multiaddr::Protocol;
    let mut it = addr.iter();
    let ip: std::net::IpAddr = match it.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    let Some(Protocol::Tcp(port)) = it.next() else {
        return Ok(());
    };
    if port == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind((ip, port)) {
        Ok(probe) => {
            drop(probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(NetError::ListenFailed {
            addr: addr.clone(),
            reason: "address in use (is another ruang node running on this port?)".into(),
        }),
        // Anything else (no such interface, permission) is for libp2p to report.
        Err(_) => Ok(()),
    }
}

fn listen_reason(e: &libp2p::TransportError<std::io::Error>) -> String {
    match e {
        libp2p::TransportError::MultiaddrNotSupported(a) => {
            format!("this transport cannot listen on {a} (check Config::transport)")
        }
        libp2p::TransportError::Other(io) if io.kind() == std::io::ErrorKind::AddrInUse => {
            "address in use".to_string()
        }
        libp2p::TransportError::Other(io) => io.to_string(),
    }
}
