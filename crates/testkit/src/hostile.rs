//! A hostile peer for tests: a bare `ruang-net` node with no ruang session on top, and a
//! script's tools. It publishes anything on any topic, replays and mutates what it heard,
//! signs with as many keys as it likes (ground to sort first, if asked), and holds audio
//! streams open without sending a frame. It writes the wire formats itself (the audio
//! stream's framing included), as a foreign implementation would.
//!
//! It accepts every gossip message it receives (so its own validation never stalls), keeps
//! the latest [`SEEN_CAP`] of them, and refuses every sync request.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::{AsyncReadExt, AsyncWriteExt};
use rand::{Rng, RngExt};
use ruang_net::{Client, Multiaddr, NetError, PeerId, Transport};
use ruang_proto::{
    Identity, PublicKey,
    directory::Announcement,
    ephemeral::{Ephemeral, EphemeralBody},
    room::{Genesis, Info, Room, RoomId, Visibility},
    signed,
};
use ruang_session::wire::{AudioHeader, RoomMessage, SyncRefusal, SyncRequest, SyncResponse};
use tokio::task::JoinHandle;

/// Gossip messages a [`Peer`] keeps (the oldest go first).
pub const SEEN_CAP: usize = 100_000;

/// How long a call of the harness waits for the network before it gives up.
const PATIENCE: Duration = Duration::from_secs(20);

/// What went wrong in the harness (not in the victim: that is what tests assert on).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The network layer failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// A peer answered with something the harness could not use.
    #[error("unexpected answer: {0}")]
    Answer(String),
}

/// A gossip message a [`Peer`] received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The peer that delivered it.
    pub from: PeerId,
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub data: Vec<u8>,
}

/// A hostile peer (see the module's documentation).
pub struct Peer {
    /// Its network client: anything the harness does not wrap, a test can do with it.
    pub client: Client,
    /// Its identity (also its libp2p key).
    pub identity: Identity,
    seen: Arc<Mutex<VecDeque<Seen>>>,
    listener: JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Peer {
    /// Starts a peer listening on loopback QUIC (no mDNS).
    pub async fn spawn(identity: Identity) -> Result<Peer, Error> {
        let loopback = "/ip4/127.0.0.1/udp/0/quic-v1"
            .parse()
            .expect("a valid address");
        Self::spawn_on(identity, loopback).await
    }

    /// Starts a peer listening on `listen` (QUIC; no mDNS): in a network namespace, its
    /// address there.
    pub async fn spawn_on(identity: Identity, listen: Multiaddr) -> Result<Peer, Error> {
        let mut secret = *identity.secret_bytes();
        let keypair = ruang_net::Keypair::ed25519_from_bytes(&mut secret)
            .map_err(|e| Error::Answer(e.to_string()))?;
        let mut config = ruang_net::Config::new(keypair).with_transport(Transport::QuicOnly);
        config.mdns = false;
        config.listen = vec![listen];
        let (client, mut events, _audio) = tokio::time::timeout(PATIENCE, ruang_net::spawn(config))
            .await
            .map_err(|_| Error::Timeout("starting the network layer"))??;
        let seen = Arc::new(Mutex::new(VecDeque::new()));
        let (c, s) = (client.clone(), seen.clone());
        let listener = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    ruang_net::Event::Gossip {
                        source,
                        id,
                        topic,
                        data,
                        ..
                    } => {
                        let _ = c
                            .report_validation(id, source, ruang_net::Verdict::Accept)
                            .await;
                        let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                        if s.len() >= SEEN_CAP {
                            s.pop_front();
                        }
                        s.push_back(Seen {
                            from: source,
                            topic,
                            data,
                        });
                    }
                    ruang_net::Event::SyncRequest { reply, .. } => {
                        let refusal = SyncResponse::Refused(SyncRefusal::NotInRoom).encode();
                        let _ = c.respond(reply, refusal).await;
                    }
                    _ => {}
                }
            }
        });
        Ok(Peer {
            client,
            identity,
            seen,
            listener,
        })
    }

    /// Its peer id.
    pub fn peer_id(&self) -> PeerId {
        self.client.local_peer_id()
    }

    /// Its key.
    pub fn key(&self) -> PublicKey {
        self.identity.public()
    }

    /// Gossip payloads received on `topic`, oldest first.
    pub fn seen_on(&self, topic: &str) -> Vec<Vec<u8>> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|g| g.topic == topic)
            .map(|g| g.data.clone())
            .collect()
    }

    /// Subscribes to `topic`, dials every address (each with `/p2p/`) and waits until every
    /// one of those peers is on the topic with it.
    pub async fn attach(&self, topic: &str, addrs: &[Multiaddr]) -> Result<(), Error> {
        self.client.subscribe(topic).await?;
        let mut peers = Vec::new();
        for addr in addrs {
            if let Some(ruang_net::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
                peers.push(peer);
            }
            self.client.dial(addr.clone()).await?;
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let on_topic = self.client.topic_peers(topic).await?;
            if peers.iter().all(|p| on_topic.contains(p)) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout("the peers dialled to share the topic"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes `data` on `topic` as it is.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), Error> {
        Ok(self.client.publish(topic, data).await?)
    }

    /// Pulls the whole log of `room` from `peer` over `/ruang/sync/1`, as a joining node does.
    pub async fn fetch_log(&self, peer: PeerId, room: RoomId) -> Result<Room, Error> {
        let mut replica: Option<Room> = None;
        let mut from = 0;
        for _ in 0..100 {
            let heads = replica.as_ref().map(|r| r.heads()).unwrap_or_default();
            let request = SyncRequest::Room { room, heads, from }.encode();
            let bytes = self.client.sync_request(peer, request).await?;
            let answer = SyncResponse::decode(&bytes).map_err(|e| Error::Answer(e.to_string()))?;
            let SyncResponse::Room { events, next } = answer else {
                return Err(Error::Answer(format!("sync refused: {answer:?}")));
            };
            for wire in &events {
                match replica.as_mut() {
                    None => {
                        let genesis = Room::from_genesis_wire(room, wire)
                            .map_err(|e| Error::Answer(e.to_string()))?;
                        replica = Some(genesis);
                    }
                    Some(r) => {
                        r.insert_wire(wire);
                    }
                }
            }
            match next {
                Some(n) if n > from => from = n,
                _ => break,
            }
        }
        replica.ok_or_else(|| Error::Answer("no genesis in the sync answer".into()))
    }

    /// Opens `count` audio streams to `peer` and holds them (see [`hold_audio_streams`]).
    pub fn hold_audio_streams(&self, peer: PeerId, count: usize, header: Vec<u8>) -> Held {
        hold_audio_streams(&self.client, peer, count, header)
    }
}

/// Opens `count` audio streams from `client` to `peer` (connected already) with `header` (an
/// encoded [`AudioHeader`] for a ruang node) and holds them without sending a frame; a stream
/// the victim closes is opened again at once, one it refuses after 100 ms, until the returned
/// [`Held`] is dropped.
pub fn hold_audio_streams(client: &Client, peer: PeerId, count: usize, header: Vec<u8>) -> Held {
    let stats = Arc::new(HeldStats::default());
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let (client, header, stats) = (client.clone(), header.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            // Bounded by the Held's life (it aborts this task); a pause after each refusal.
            loop {
                match open_idle_stream(&client, peer, &header).await {
                    Ok(mut stream) => {
                        stats.opened.fetch_add(1, Ordering::Relaxed);
                        stats.open.fetch_add(1, Ordering::Relaxed);
                        // Reads until the victim closes it (it sends nothing else but
                        // loss reports, which are read and dropped).
                        let mut buf = [0u8; 64];
                        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                        stats.open.fetch_sub(1, Ordering::Relaxed);
                        stats.closed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    Held { stats, tasks }
}

/// Opens one audio stream, writes its header and waits for the receiver's ack.
async fn open_idle_stream(
    client: &Client,
    peer: PeerId,
    header: &[u8],
) -> Result<ruang_net::Stream, Error> {
    let mut stream = client
        .open_raw_stream(peer, ruang_net::AUDIO_PROTOCOL)
        .await?;
    let len = u16::try_from(header.len()).map_err(|_| Error::Answer("header too long".into()))?;
    let mut hello = len.to_be_bytes().to_vec();
    hello.extend_from_slice(header);
    let io = |e: std::io::Error| Error::Answer(e.to_string());
    stream.write_all(&hello).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut ack = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut ack))
        .await
        .map_err(|_| Error::Timeout("the audio stream's ack"))?
        .map_err(io)?;
    Ok(stream)
}

/// Counters of streams a [`Peer`] holds (see [`Peer::hold_audio_streams`]).
#[derive(Debug, Default)]
pub struct HeldStats {
    /// Streams the victim took (acked), in all.
    pub opened: AtomicU64,
    /// Streams open now.
    pub open: AtomicU64,
    /// Streams the victim closed after taking them.
    pub closed: AtomicU64,
    /// Attempts the victim refused (or that failed).
    pub refused: AtomicU64,
}

/// Audio streams being held; dropping it stops the holding (the streams close).
pub struct Held {
    /// What happened so far.
    pub stats: Arc<HeldStats>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The header of an audio stream from `speaker` in `room` (20 ms frames).
pub fn audio_header(room: RoomId, speaker: PublicKey) -> Vec<u8> {
    AudioHeader {
        room,
        speaker,
        frame_ms: 20,
        salt: 0,
    }
    .encode()
}

/// A signed ephemeral message of `author` as it goes on a room's topic.
pub fn ephemeral(author: &Identity, room: RoomId, sent_at: u64, body: EphemeralBody) -> Vec<u8> {
    let msg = Ephemeral {
        room,
        author: author.public(),
        sent_at,
        body,
    };
    let signed = signed::sign(author, msg).expect("an ephemeral message within its bound");
    RoomMessage::Ephemeral(signed.wire().to_vec()).encode()
}

/// A presence heartbeat of `author` (no addresses, a minute to live).
pub fn presence(author: &Identity, room: RoomId, sent_at: u64, name: &str) -> Vec<u8> {
    presence_at(author, room, sent_at, name, Vec::new())
}

/// Like [`presence`], claiming `addresses` (multiaddr bytes): anyone's, not only the
/// author's.
pub fn presence_at(
    author: &Identity,
    room: RoomId,
    sent_at: u64,
    name: &str,
    addresses: Vec<Vec<u8>>,
) -> Vec<u8> {
    let body = EphemeralBody::Presence {
        name: name.into(),
        ttl_ms: 60_000,
        addresses,
        leaving: false,
    };
    ephemeral(author, room, sent_at, body)
}

/// A public room `host` opens, titled `title`, announced by it as it goes on the directory
/// topic: issued at `issued_at` (unix ms), for a minute, claiming `listeners`.
pub fn fake_room(
    host: &Identity,
    title: &str,
    issued_at: u64,
    listeners: u32,
    rng: &mut impl rand::CryptoRng,
) -> Vec<u8> {
    let genesis = Genesis {
        info: Info {
            title: title.into(),
            ..Info::default()
        },
        visibility: Visibility::Public,
        successors: Vec::new(),
        nonce: rng.random(),
    };
    let (room, signed_genesis) =
        Room::create(host, genesis, issued_at, rng).expect("a genesis within its bounds");
    let announcement = Announcement {
        room: room.id(),
        author: host.public(),
        genesis: signed_genesis.wire().to_vec(),
        info: room.state().info.clone(),
        host: host.public(),
        host_name: "host".into(),
        speakers: Vec::new(),
        listener_count: listeners,
        addresses: Vec::new(),
        started_at: issued_at,
        scheduled_for: None,
        issued_at,
        expires_at: issued_at + 60_000,
        ended: false,
    };
    signed::sign(host, announcement)
        .expect("an announcement within its bound")
        .wire()
        .to_vec()
}

/// `message` with `count` random bytes appended: a copy with another content hash, so
/// another gossip message id, if the receiver ignores trailing bytes.
pub fn with_trailing(message: &[u8], count: usize, rng: &mut impl Rng) -> Vec<u8> {
    let mut out = message.to_vec();
    out.extend((0..count).map(|_| rng.random::<u8>()));
    out
}

/// `count` identities whose keys sort before every key of `others` (each takes a few
/// hundred tries per leading zero byte a low key needs).
pub fn grind_keys(
    count: usize,
    others: &[PublicKey],
    rng: &mut impl rand::CryptoRng,
) -> Vec<Identity> {
    let floor = others.iter().min().copied();
    let mut out = Vec::with_capacity(count);
    // Bounded: a key below another 32-byte key with a high first byte takes few tries; give
    // up on `floor` after a million tries per key (it would have to start with zeros).
    for _ in 0..count {
        for _ in 0..1_000_000 {
            let id = Identity::generate(rng);
            if floor.is_none_or(|f| id.public() < f) {
                out.push(id);
                break;
            }
        }
    }
    out
}
