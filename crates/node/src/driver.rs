//! The driver: one task that feeds the session core ([`ruang_session::Core`]) with what
//! happens — user commands, network events, audio events, its timer — and carries out what the
//! core asks, through [`ruang_net::Client`] and the audio threads.
//!
//! Outputs are carried out in the order the core gave them, one network call at a time,
//! while the task goes on taking commands and events: the call in flight is one branch of the
//! task's `select!`. Outputs that take a network round trip or longer (dials, a join's
//! connection, sync requests) run beside it, bounded by [`MAX_BACKGROUND`], and report back
//! as inputs. The core's one deadline ([`Core::poll_timeout`]) is the task's only timer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use ruang_audio::codec::EncoderConfig;
use ruang_audio::loss;
use ruang_audio::voice::VoiceProcessor;

/// The echo canceller's first guess of the loudspeaker-to-microphone delay, ms (sound card
/// buffers both ways; AEC3 finds the actual delay itself).
const VOICE_DELAY_HINT_MS: u32 = 40;
use ruang_audio::send::Sender;
use ruang_net::{
    AudioRequest, Client, Event, Events, MessageId, Multiaddr, NetError, PeerId, SyncReply,
    Verdict as NetVerdict,
};
use ruang_proto::PublicKey;
use ruang_session::{
    Answer, AudioPolicy, Command as CoreCommand, CommandId, Core, Delivery, Input, Output,
    SyncFailure, Time, Verdict,
};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::addrs::{self, peer_of, relay_part};
use crate::audio::capture::{Capture, Outbound, Pacing};
use crate::audio::playout::{FrameSender, Playout, frame_queue};
use crate::audio::receive::{self, ReceiveCounters};
use crate::audio::{AUDIO_EVENT_CAP, AudioEvent, FarEnd, SharedPolicy};
use crate::clock::{self, Clock};
use crate::config::Config;
use crate::error::NodeError;
use crate::event::{NodeEvent, SpeakerStats};
use crate::handle::{COMMAND_QUEUE_CAP, Command, Joined, NodeHandle, Reply, Status};
use crate::ids;
use crate::wire::AudioHeader;

/// Capacity of the node's event broadcast; a subscriber this far behind loses the oldest.
pub const EVENT_BROADCAST_CAP: usize = 1_024;
/// Outputs waiting to be carried out beyond which the task stops reading network events
/// (the network layer then holds them back) until it has caught up.
const OUTBOX_CAP: usize = 4_096;
/// Dials and requests in flight at once. A sync request beyond it fails at once; a dial is
/// skipped (the core dials again later).
const MAX_BACKGROUND: usize = 256;
/// A join's dial that fails within this is tried again after as long: the first relayed dial
/// of a fresh node can be cancelled while its connection to the relay is being set up.
const JOIN_DIAL_QUICK_FAILURE: Duration = Duration::from_millis(500);
/// Dials of a join to one peer when they fail quickly (see [`JOIN_DIAL_QUICK_FAILURE`]).
const JOIN_DIAL_TRIES: u32 = 3;
/// A join through a relay that reached no one tries again, after [`JOIN_RETRY_PAUSE`], as long
/// as this much time has not passed since it began. A relay can be out of reach for a few
/// seconds (restarting, its connection to us or to the host lost and being replaced); a join
/// with only direct addresses fails at once, as a refused or unrouted address will not answer
/// a second time either.
const JOIN_RELAYED_PATIENCE: Duration = Duration::from_secs(25);
/// Pause between two rounds of a join's dials through relays.
const JOIN_RETRY_PAUSE: Duration = Duration::from_secs(1);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a background output came back with.
enum Finished {
    /// An input for the core.
    Input(Input),
    /// A join's connection: the input, and the addresses of the member it reached (to dial
    /// it again the same way).
    JoinDialed(Input, Option<(PublicKey, Vec<Multiaddr>)>),
    /// Nothing to report.
    Nothing,
}

/// A command's reply, waiting for the core's answer.
enum Pending {
    Joined(Reply<Joined>),
    Done(Reply<()>),
    Sent(Reply<Delivery>),
}

pub(crate) async fn spawn(config: Config) -> Result<NodeHandle, NodeError> {
    let keypair = ids::keypair(&config.identity);
    let mut net_config = ruang_net::Config::new(keypair).with_transport(config.transport);
    if !config.listen.is_empty() {
        net_config.listen = config.listen.clone();
    }
    net_config.bootstrap = config.bootstrap.clone();
    net_config.mdns = config.mdns;
    net_config.relay_server = config.relay_server;
    net_config.hide_ip = config.hide_ip;
    net_config.auto_relays = config.auto_relays;
    net_config.websocket_tls = config.websocket_tls.clone();
    net_config.metrics = config.metrics.clone();
    let (client, net_events, inbox) = ruang_net::spawn(net_config).await?;

    let (events, _) = broadcast::channel(EVENT_BROADCAST_CAP);
    // Reservations on every relay at once; the network layer keeps them (asks again when one
    // fails or is lost) for as long as the node runs.
    let reservations = config.relays.iter().map(|relay| {
        let client = client.clone();
        async move { (relay.clone(), client.listen_via_relay(relay.clone()).await) }
    });
    let mut relay_addrs = HashMap::new();
    for (relay, result) in futures::future::join_all(reservations).await {
        match result {
            Ok(addr) => {
                if let Some(peer) = peer_of(&relay) {
                    relay_addrs.insert(peer, addr);
                }
            }
            Err(e) => warn!(
                %relay,
                error = %e,
                "no reservation on the relay yet (asking again in the background)"
            ),
        }
    }

    let clock = Clock::new();
    let (audio_tx, audio_rx) = mpsc::channel(AUDIO_EVENT_CAP);
    let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE_CAP);
    let policy = Arc::new(SharedPolicy::default());
    // Frames go to the playout thread while one runs (`Command::Listen`), else nowhere.
    let (frames, frames_rx) = tokio::sync::watch::channel(None);
    let counters = Arc::new(ReceiveCounters::default());
    tokio::spawn(receive::run(
        inbox,
        receive::Receiver {
            policy: policy.clone(),
            frames: frames_rx,
            clock,
            decode: config.decode_audio,
            events: audio_tx.clone(),
            counters: counters.clone(),
        },
    ));

    let me = config.identity.public();
    let handle = NodeHandle {
        commands: command_tx,
        events: events.clone(),
        peer_id: client.local_peer_id(),
        key: me,
    };
    let started = Instant::now();
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let core = Core::new(
        ruang_session::Config {
            identity: config.identity.clone(),
            name: config.name.clone(),
            hide_ip: config.hide_ip,
            fanout: config.fanout,
            presence_interval_ms: config.presence_interval.as_millis() as u64,
            audience_sample: ruang_session::limits::AUDIENCE_SAMPLE,
            announce_interval_ms: config.announce_interval.as_millis() as u64,
            sync_interval_ms: config.sync_interval.as_millis() as u64,
            seed: rng.random(),
        },
        Time {
            mono_ms: 0,
            unix_ms: clock::unix_ms(),
        },
    );
    let mut driver = Driver {
        core,
        started,
        me,
        config,
        client,
        net_events,
        commands: command_rx,
        events,
        audio_rx,
        audio_tx,
        rng,
        clock,
        outbound: Arc::new(Outbound::new(policy.clone())),
        audio_requests: Vec::new(),
        policy,
        frames,
        counters,
        capture: None,
        playout: None,
        connected: HashSet::new(),
        addrs: Vec::new(),
        relay_addrs,
        relays_lost: HashSet::new(),
        pending: HashMap::new(),
        next_command: 0,
        gossip: HashMap::new(),
        sync_replies: HashMap::new(),
        next_token: 0,
        outbox: VecDeque::new(),
        in_flight: None,
        background: FuturesUnordered::new(),
        join_addrs: None,
        join_dial: None,
        stopped: false,
        heard_before: HashMap::new(),
        far_end: Arc::new(FarEnd::default()),
    };
    // The core's first outputs (the directory's subscription) are done before the node is.
    driver
        .outbox
        .extend(std::iter::from_fn(|| driver.core.poll_output()));
    driver.flush().await;
    driver.refresh_addrs().await;
    tokio::spawn(driver.run());
    Ok(handle)
}

struct Driver {
    core: Core,
    /// The origin of the core's monotonic clock.
    started: Instant,
    me: PublicKey,
    config: Config,
    client: Client,
    net_events: Events,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<NodeEvent>,
    audio_rx: mpsc::Receiver<AudioEvent>,
    audio_tx: mpsc::Sender<AudioEvent>,
    rng: StdRng,
    clock: Clock,
    outbound: Arc<Outbound>,
    /// Our requests for the stage's audio, one per speaker asked.
    audio_requests: Vec<AudioRequest>,
    /// The core's audio policy, as last handed out: read by the receive task, capture and
    /// playout.
    policy: Arc<SharedPolicy>,
    /// Where the receive task sends accepted frames: the running playout's queue.
    frames: tokio::sync::watch::Sender<Option<FrameSender>>,
    counters: Arc<ReceiveCounters>,
    capture: Option<Capture>,
    playout: Option<Playout>,
    connected: HashSet<PeerId>,
    /// Our addresses with `/p2p/<self>`, best first.
    addrs: Vec<Multiaddr>,
    /// Our address through each relay that holds a reservation for us.
    relay_addrs: HashMap<PeerId, Multiaddr>,
    /// Relays whose reservation was lost and not regained yet.
    relays_lost: HashSet<PeerId>,
    pending: HashMap<CommandId, Pending>,
    next_command: CommandId,
    /// Gossip awaiting the core's verdict, by token.
    gossip: HashMap<u64, (MessageId, PeerId)>,
    /// Sync requests awaiting the core's response, by token.
    sync_replies: HashMap<u64, SyncReply>,
    next_token: u64,
    /// The core's outputs not carried out yet, in order.
    outbox: VecDeque<Output>,
    /// The output being carried out (a network call); the ones after it wait.
    in_flight: Option<BoxFuture<Vec<Input>>>,
    /// Dials and requests that report back when they finish.
    background: FuturesUnordered<BoxFuture<Finished>>,
    /// The member a join reached and its addresses.
    join_addrs: Option<(PublicKey, Vec<Multiaddr>)>,
    /// Stops the join's dials in flight (see [`join_dial`]).
    join_dial: Option<futures::future::AbortHandle>,
    /// The core said [`Output::Stopped`].
    stopped: bool,
    /// The played mix, for the microphone's echo canceller.
    far_end: Arc<FarEnd>,
    /// Each heard speaker's playout counters at the last stats, for the loss reported back.
    heard_before: HashMap<PublicKey, ruang_audio::jitter::Stats>,
}

/// Waits for the output in flight, if any (never resolves when there is none).
async fn in_flight(slot: &mut Option<BoxFuture<Vec<Input>>>) -> Vec<Input> {
    match slot {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

impl Driver {
    async fn run(mut self) {
        let mut stop_reply = None;
        // Whether the command queue and the network's events are still open.
        let (mut commands_open, mut net_open) = (true, true);
        loop {
            self.pump();
            if self.stopped {
                break;
            }
            let deadline = self.started + Duration::from_millis(self.core.poll_timeout());
            let reading = self.outbox.len() < OUTBOX_CAP;
            tokio::select! {
                biased;
                cmd = self.commands.recv(), if commands_open => match cmd {
                    Some(Command::Shutdown(reply)) => {
                        stop_reply = Some(reply);
                        self.capture = None;
                        if let Some(p) = self.playout.take() {
                            p.finish();
                        }
                        self.command_to_core(CoreCommand::Shutdown, None);
                    }
                    Some(cmd) => self.command(cmd),
                    // Every handle dropped: nobody can use the node any more.
                    None => {
                        commands_open = false;
                        self.command_to_core(CoreCommand::Shutdown, None);
                    }
                },
                inputs = in_flight(&mut self.in_flight) => {
                    self.in_flight = None;
                    for input in inputs {
                        self.feed(input);
                    }
                }
                Some(done) = self.background.next(), if !self.background.is_empty() => {
                    match done {
                        Finished::Input(input) => self.feed(input),
                        Finished::JoinDialed(input, reached) => {
                            if reached.is_some() {
                                self.join_addrs = reached;
                            }
                            self.feed(input);
                        }
                        Finished::Nothing => {}
                    }
                }
                ev = self.net_events.recv(), if reading && net_open => match ev {
                    Some(ev) => self.net_event(ev).await,
                    None => {
                        net_open = false;
                        self.emit(NodeEvent::Error { message: "the network layer stopped".into() });
                        self.command_to_core(CoreCommand::Shutdown, None);
                    }
                },
                Some(ev) = self.audio_rx.recv() => self.audio_event(ev),
                _ = tokio::time::sleep_until(deadline) => self.feed(Input::Timeout),
            }
        }
        self.capture = None;
        if let Some(p) = self.playout.take() {
            p.finish();
        }
        self.client.shutdown().await;
        // Answered once the network layer has closed its connections, so that a process
        // exiting right after does not leave them to time out.
        if let Some(reply) = stop_reply {
            let _ = reply.send(Ok(()));
        }
    }

    /// Carries out every queued output, waiting for each network call.
    async fn flush(&mut self) {
        loop {
            self.pump();
            match self.in_flight.take() {
                Some(call) => {
                    for input in call.await {
                        self.feed(input);
                    }
                }
                None => break,
            }
        }
    }

    fn time(&self) -> Time {
        Time {
            mono_ms: self.started.elapsed().as_millis() as u64,
            unix_ms: clock::unix_ms(),
        }
    }

    fn emit(&self, event: NodeEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    /// Hands `input` to the core and queues what it asks.
    fn feed(&mut self, input: Input) {
        let time = self.time();
        self.core.handle(time, input);
        while let Some(output) = self.core.poll_output() {
            self.outbox.push_back(output);
        }
        // A join that ended (cancelled by a leave, say) stops dialling and saying so.
        if !self.core.is_joining()
            && let Some(dial) = self.join_dial.take()
        {
            dial.abort();
        }
    }

    fn command_to_core(&mut self, command: CoreCommand, reply: Option<Pending>) {
        self.next_command += 1;
        let id = self.next_command;
        if let Some(reply) = reply {
            self.pending.insert(id, reply);
        }
        self.feed(Input::Command(id, command));
    }

    /// Carries out the queued outputs in order until one needs a network call (which is then
    /// in flight) or none is left.
    fn pump(&mut self) {
        while self.in_flight.is_none()
            && !self.stopped
            && let Some(output) = self.outbox.pop_front()
        {
            self.carry_out(output);
        }
    }

    fn carry_out(&mut self, output: Output) {
        let client = self.client.clone();
        let peer = |key: &PublicKey| ids::peer_id(key);
        match output {
            Output::Publish { id, topic, data } => {
                self.in_flight = Some(Box::pin(async move {
                    let delivered = match client.publish(&topic, data).await {
                        Ok(()) | Err(NetError::Duplicate { .. }) => true,
                        Err(NetError::InsufficientPeers { .. }) => false,
                        Err(e) => {
                            debug!(topic, error = %e, "publish failed");
                            false
                        }
                    };
                    id.map(|id| Input::Published { id, delivered })
                        .into_iter()
                        .collect()
                }));
            }
            Output::Verdict { token, verdict } => {
                let Some((id, source)) = self.gossip.remove(&token) else {
                    return;
                };
                let verdict = match verdict {
                    Verdict::Accept => NetVerdict::Accept,
                    Verdict::Reject => NetVerdict::Reject,
                    Verdict::Ignore => NetVerdict::Ignore,
                };
                self.call(async move {
                    if let Err(e) = client.report_validation(id, source, verdict).await {
                        debug!(error = %e, "could not report a validation result");
                    }
                });
            }
            Output::Subscribe { topic, keep_peers } => {
                let events = self.events.clone();
                self.call(async move {
                    let subscribed = if keep_peers {
                        client.subscribe_keeping_peers(&topic).await
                    } else {
                        client.subscribe(&topic).await
                    };
                    if let Err(e) = subscribed {
                        let _ = events.send(NodeEvent::Error {
                            message: format!("cannot subscribe to {topic}: {e}"),
                        });
                    }
                });
            }
            Output::Unsubscribe(topic) => {
                self.call(async move {
                    let _ = client.unsubscribe(&topic).await;
                });
            }
            Output::SyncReply { token, response } => {
                let Some(reply) = self.sync_replies.remove(&token) else {
                    return;
                };
                self.call(async move {
                    if let Err(e) = client.respond(reply, response).await {
                        debug!(error = %e, "could not answer a sync request");
                    }
                });
            }
            Output::AddAddresses {
                peer: key,
                addresses,
            } => {
                let Some(peer) = peer(&key) else {
                    return;
                };
                self.call(async move {
                    for a in addresses
                        .into_iter()
                        .filter_map(|a| Multiaddr::try_from(a).ok())
                    {
                        let _ = client.add_address(peer, a).await;
                    }
                });
            }
            Output::Block(key) => {
                let Some(peer) = peer(&key) else {
                    return;
                };
                self.call(async move {
                    let _ = client.block(peer).await;
                });
            }
            Output::Unblock(key) => {
                let Some(peer) = peer(&key) else {
                    return;
                };
                self.call(async move {
                    let _ = client.unblock(peer).await;
                });
            }
            Output::SetDhtServer(server) => {
                self.call(async move {
                    if let Err(e) = client.set_dht_server(server).await {
                        debug!(error = %e, "cannot switch the Kademlia mode");
                    }
                });
            }
            Output::SyncRequest { id, to, request } => {
                let Some(peer) = peer(&to) else {
                    return self.feed(Input::SyncAnswer {
                        id,
                        result: Err(SyncFailure::Other("not a ruang peer".into())),
                    });
                };
                if self.background.len() >= MAX_BACKGROUND {
                    return self.feed(Input::SyncAnswer {
                        id,
                        result: Err(SyncFailure::Other("too many requests in flight".into())),
                    });
                }
                self.background.push(Box::pin(async move {
                    let result = client
                        .sync_request(peer, request)
                        .await
                        .map_err(|e| match e {
                            NetError::NotConnected { .. } | NetError::Stream(_) => {
                                SyncFailure::Disconnected
                            }
                            other => SyncFailure::Other(other.to_string()),
                        });
                    Finished::Input(Input::SyncAnswer { id, result })
                }));
            }
            Output::JoinDial { host, addresses } => {
                let addrs = addresses
                    .into_iter()
                    .filter_map(|a| Multiaddr::try_from(a).ok())
                    .collect();
                let progress = Progress {
                    events: self.events.clone(),
                    hide_ip: self.config.hide_ip,
                };
                self.join_addrs = None;
                let (dial, abort) = futures::future::abortable(async move {
                    join_dial(&client, host, addrs, &progress).await
                });
                if let Some(old) = self.join_dial.replace(abort) {
                    old.abort();
                }
                self.background.push(Box::pin(async move {
                    match dial.await {
                        Ok(Ok((key, addrs))) => {
                            Finished::JoinDialed(Input::JoinDialed(Ok(key)), Some((key, addrs)))
                        }
                        Ok(Err(why)) => Finished::JoinDialed(Input::JoinDialed(Err(why)), None),
                        // The join was cancelled (or replaced) while dialling.
                        Err(futures::future::Aborted) => Finished::Nothing,
                    }
                }));
            }
            Output::JoinRedial { peer: key } => {
                let addrs = match &self.join_addrs {
                    Some((k, addrs)) if *k == key => addrs.clone(),
                    _ => Vec::new(),
                };
                let Some(peer) = peer(&key) else {
                    return;
                };
                self.background.push(Box::pin(async move {
                    let result = client
                        .dial_peer(peer, addrs)
                        .await
                        .map(|()| key)
                        .map_err(|e| e.to_string());
                    Finished::Input(Input::JoinDialed(result))
                }));
            }
            Output::Dial {
                peer: key,
                addresses,
            } => {
                let Some(peer) = peer(&key) else {
                    return;
                };
                if self.background.len() >= MAX_BACKGROUND {
                    return;
                }
                self.background.push(Box::pin(async move {
                    for addr in addresses
                        .into_iter()
                        .filter_map(|a| Multiaddr::try_from(a).ok())
                    {
                        if client.dial(ruang_net::with_peer(addr, peer)).await.is_ok() {
                            break;
                        }
                    }
                    Finished::Nothing
                }));
            }
            Output::Connect(key) => {
                let Some(peer) = peer(&key) else {
                    return;
                };
                if self.background.len() >= MAX_BACKGROUND {
                    return;
                }
                self.background.push(Box::pin(async move {
                    if let Err(e) = client.connect(peer).await {
                        debug!(%peer, error = %e, "could not reach a stage member");
                    }
                    Finished::Nothing
                }));
            }
            Output::CloseAudioFrom(key) => {
                if let Some(peer) = peer(&key) {
                    self.client.close_audio_from(peer);
                }
            }
            Output::AudioPolicy(policy) => self.set_audio_policy(policy),
            Output::AudioTargets(targets) => self.set_audio_targets(&targets),
            Output::RefuseAudio(key) => {
                if let Some(peer) = peer(&key) {
                    self.client.refuse_audio_request(peer);
                }
            }
            Output::AudioRequests { request, speakers } => {
                let peers: Vec<PeerId> = speakers.iter().filter_map(ids::peer_id).collect();
                self.audio_requests.retain(|r| peers.contains(&r.peer()));
                for peer in peers {
                    if !self.audio_requests.iter().any(|r| r.peer() == peer) {
                        debug!(%peer, "asking a speaker for its audio");
                        let asked = self.client.ask_for_audio(peer, request.clone());
                        self.audio_requests.push(asked);
                    }
                }
            }
            Output::Event(event) => self.emit(event),
            Output::StateChanged => {
                if let Some(view) = self.core.view() {
                    self.emit(NodeEvent::State(Box::new(view)));
                }
            }
            Output::Reply { id, result } => self.reply(id, result),
            Output::Stopped => self.stopped = true,
        }
    }

    /// Puts a network call that reports nothing in flight.
    fn call(&mut self, call: impl Future<Output = ()> + Send + 'static) {
        self.in_flight = Some(Box::pin(async move {
            call.await;
            Vec::new()
        }));
    }

    fn reply(&mut self, id: CommandId, result: Result<Answer, ruang_session::Error>) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        match pending {
            Pending::Joined(reply) => {
                let _ = reply.send(match result {
                    Ok(Answer::Joined(joined)) => Ok(joined),
                    Ok(_) => Err(NodeError::Invalid("no room was joined".into())),
                    Err(e) => Err(e.into()),
                });
            }
            Pending::Sent(reply) => {
                let _ = reply.send(match result {
                    Ok(Answer::Sent(delivery)) => Ok(delivery),
                    Ok(_) => Ok(Delivery::Reached),
                    Err(e) => Err(e.into()),
                });
            }
            Pending::Done(reply) => {
                let _ = reply.send(result.map(|_| ()).map_err(NodeError::from));
            }
        }
    }

    /// Hands the core's audio policy to the playout, the receive task and capture (one
    /// swap), and tells the network layer whose streams go first.
    fn set_audio_policy(&mut self, policy: Arc<AudioPolicy>) {
        self.client
            .set_audio_priority(policy.allowed.iter().filter_map(crate::ids::peer_id));
        self.policy.set(policy);
    }

    /// Opens and closes audio links to match whom the core says this node streams to.
    fn set_audio_targets(&mut self, targets: &[PublicKey]) {
        let header = self.policy.load().room.map(|room| {
            AudioHeader {
                room,
                speaker: self.me,
                frame_ms: self.config.frame.as_millis() as u8,
                salt: self.outbound.salt.load(Ordering::Relaxed),
            }
            .encode()
        });
        let peers: Vec<PeerId> = targets.iter().filter_map(ids::peer_id).collect();
        let mut links = self
            .outbound
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        links.retain(|l| peers.contains(&l.peer()));
        if let Some(header) = header {
            for peer in peers {
                if !links.iter().any(|l| l.peer() == peer) {
                    debug!(%peer, "audio link to a listener");
                    links.push(self.client.open_audio(peer, header.clone()));
                }
            }
        }
    }

    // ----- commands ---------------------------------------------------------------------

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Host(options, reply) => {
                self.command_to_core(CoreCommand::Host(options), Some(Pending::Joined(reply)));
            }
            Command::Join(target, reply) => {
                self.command_to_core(CoreCommand::Join(target), Some(Pending::Joined(reply)));
            }
            Command::Leave(reply) => {
                self.command_to_core(CoreCommand::Leave, Some(Pending::Done(reply)));
            }
            Command::Act(body, reply) => {
                self.command_to_core(CoreCommand::Act(body), Some(Pending::Sent(reply)));
            }
            Command::Chat(text, reply) => {
                self.command_to_core(CoreCommand::Chat(text), Some(Pending::Sent(reply)));
            }
            Command::React(reaction, reply) => {
                self.command_to_core(CoreCommand::React(reaction), Some(Pending::Sent(reply)));
            }
            Command::Speak(source, pacing, reply) => {
                let result = self.speak(source, pacing);
                let _ = reply.send(result);
            }
            Command::StopSpeaking(reply) => {
                self.capture = None;
                self.feed(Input::Sending(false));
                let _ = reply.send(Ok(()));
            }
            Command::Listen(sink, reply) => {
                self.frames.send_replace(None);
                if let Some(old) = self.playout.take() {
                    old.finish();
                }
                let (frames, mixing) = frame_queue(self.config.frame, self.policy.clone());
                let result = Playout::spawn(
                    sink,
                    mixing,
                    self.far_end.clone(),
                    self.clock,
                    self.audio_tx.clone(),
                )
                .map(|p| {
                    self.playout = Some(p);
                    self.frames.send_replace(Some(frames));
                })
                .map_err(|e| NodeError::Audio(e.to_string()));
                let _ = reply.send(result);
            }
            Command::StopListening(reply) => {
                self.frames.send_replace(None);
                if let Some(p) = self.playout.take() {
                    p.finish();
                }
                let _ = reply.send(Ok(()));
            }
            Command::SelfMute(on, reply) => {
                self.outbound.self_muted.store(on, Ordering::Relaxed);
                let _ = reply.send(Ok(()));
            }
            Command::Rooms(reply) => {
                let _ = reply.send(Ok(self.core.listings(clock::unix_ms())));
            }
            Command::Status(reply) => {
                let _ = reply.send(Ok(self.status()));
            }
            // Handled by the run loop.
            Command::Shutdown(reply) => {
                let _ = reply.send(Err(NodeError::Shutdown));
            }
        }
    }

    fn status(&self) -> Status {
        Status {
            peer_id: self.client.local_peer_id(),
            addrs: self.addrs.clone(),
            peers: self.connected.len(),
            room: self.core.view(),
            ticket: self.core.ticket(),
            self_muted: self.outbound.self_muted.load(Ordering::Relaxed),
            transmitting: self.capture.is_some() && self.policy.load().transmit,
            listeners_served: self.outbound.links.lock().map(|l| l.len()).unwrap_or(0),
            frames_accepted: self.counters.accepted.load(Ordering::Relaxed),
            frames_refused: self.counters.refused.load(Ordering::Relaxed),
            frames_limited: self.counters.limited.load(Ordering::Relaxed),
            frames_dropped_inbound: self.client.audio_in_stats().dropped,
        }
    }

    fn speak(
        &mut self,
        source: Box<dyn ruang_audio::source::Source + Send>,
        pacing: Pacing,
    ) -> Result<(), NodeError> {
        if source.frame_duration() != self.config.frame {
            return Err(NodeError::Invalid(format!(
                "the source makes {} ms frames but the node uses {} ms",
                source.frame_duration().as_millis(),
                self.config.frame.as_millis()
            )));
        }
        self.capture = None;
        let encoder = EncoderConfig {
            frame: self.config.frame,
            bitrate_bps: self.config.bitrate_bps,
            // No FEC until a listener reports loss (`ruang_audio::loss`).
            packet_loss_pct: 0,
            ..EncoderConfig::default()
        };
        let mut speaker = [0u8; 8];
        speaker.copy_from_slice(&self.me.as_bytes()[..8]);
        let sender = Sender::new(
            u64::from_be_bytes(speaker),
            encoder,
            self.rng.random(),
            self.rng.random(),
        )
        .map_err(|e| NodeError::Audio(e.to_string()))?;
        // A new capture session: a new salt, and new links (the old ones carry the old salt).
        self.outbound
            .salt
            .store(self.rng.random(), Ordering::Relaxed);
        self.outbound
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        // A microphone gets echo cancellation (against what this node plays), noise
        // suppression and gain control; files and synthetic sources go out as they are.
        let voice = (pacing == Pacing::Device && self.config.voice.any()).then(|| {
            let mut processor = VoiceProcessor::new(self.config.voice);
            processor.set_delay_ms(VOICE_DELAY_HINT_MS);
            (processor, self.far_end.attach())
        });
        let capture = Capture::spawn(
            source,
            pacing,
            voice,
            sender,
            self.outbound.clone(),
            self.clock,
            self.audio_tx.clone(),
        )
        .map_err(|e| NodeError::Audio(e.to_string()))?;
        self.capture = Some(capture);
        // The core hands out targets only when they change: ask for them afresh.
        self.feed(Input::Sending(false));
        self.feed(Input::Sending(true));
        Ok(())
    }

    // ----- network events ---------------------------------------------------------------

    async fn net_event(&mut self, event: Event) {
        let key = |peer: &PeerId| ids::public_key(peer);
        match event {
            Event::Gossip {
                source,
                id,
                topic,
                data,
                ..
            } => {
                self.next_token += 1;
                let token = self.next_token;
                self.gossip.insert(token, (id, source));
                let message = self.core.decode(&topic, &data, clock::unix_ms());
                self.feed(Input::Gossip {
                    token,
                    source: key(&source),
                    message,
                });
            }
            Event::SyncRequest {
                peer,
                request,
                reply,
            } => {
                self.next_token += 1;
                let token = self.next_token;
                self.sync_replies.insert(token, reply);
                self.feed(Input::SyncRequest {
                    token,
                    from: key(&peer),
                    request,
                });
            }
            Event::PeerConnected { peer, .. } => {
                self.connected.insert(peer);
                if let Some(k) = key(&peer) {
                    self.feed(Input::Connected(k));
                }
            }
            Event::PeerDisconnected { peer } => {
                self.connected.remove(&peer);
                if let Some(k) = key(&peer) {
                    self.feed(Input::Disconnected(k));
                }
            }
            Event::Subscribed { topic, .. } => self.feed(Input::Subscribed { topic }),
            Event::AudioStreamOpened { peer, header } => match key(&peer) {
                Some(from) => self.feed(Input::AudioStreamOpened {
                    from,
                    header: header.to_vec(),
                }),
                None => {
                    self.client.close_audio_from(peer);
                }
            },
            Event::AudioStreamClosed { peer, .. } => {
                if let Some(k) = key(&peer) {
                    self.feed(Input::AudioStreamClosed(k));
                }
            }
            Event::AudioRequested { peer, request } => match key(&peer) {
                Some(from) => self.feed(Input::AudioRequested { from, request }),
                None => {
                    self.client.refuse_audio_request(peer);
                }
            },
            Event::AudioRequestEnded { peer } => {
                // A newer request from the peer (after a reconnection, say) may have been
                // reported first: the network layer holding one means this end is stale.
                if let Some(k) = key(&peer).filter(|_| !self.client.holds_audio_request(peer)) {
                    self.feed(Input::AudioRequestEnded(k));
                }
            }
            Event::ConnectionDropped { peer } => {
                if let Some(k) = key(&peer) {
                    self.feed(Input::ConnectionDropped(k));
                }
            }
            Event::HolePunched { peer } => {
                if let Some(k) = key(&peer) {
                    self.feed(Input::HolePunched(k));
                }
            }
            Event::RelayReservation { relay, addr } => {
                if self.relay_addrs.insert(relay, addr).is_none() && self.relays_lost.remove(&relay)
                {
                    self.emit(NodeEvent::Notice {
                        message: format!("reachable through relay {relay} again"),
                    });
                }
                self.refresh_addrs().await;
            }
            Event::RelayLost { relay, reason } => {
                self.relay_addrs.remove(&relay);
                self.relays_lost.insert(relay);
                self.emit(NodeEvent::Notice {
                    message: format!(
                        "lost relay {relay} ({reason}); people who reach you through it \
                         cannot until it is back: reconnecting"
                    ),
                });
                self.refresh_addrs().await;
            }
            Event::Listening { .. } | Event::ExternalAddrConfirmed { .. } => {
                self.refresh_addrs().await;
            }
            _ => {}
        }
    }

    /// Recomputes the addresses we give others (see [`addrs::shareable`]) and tells the core
    /// when they changed.
    async fn refresh_addrs(&mut self) {
        let (Ok(mut listen), Ok(confirmed)) = (
            self.client.p2p_addrs().await,
            self.client.external_addrs().await,
        ) else {
            return;
        };
        for a in self.relay_addrs.values() {
            if !listen.contains(a) {
                listen.push(a.clone());
            }
        }
        let me = self.client.local_peer_id();
        let confirmed: Vec<Multiaddr> = confirmed
            .into_iter()
            .map(|a| ruang_net::with_peer(a, me))
            .collect();
        let addrs = addrs::shareable(&listen, &confirmed);
        if addrs == self.addrs {
            return;
        }
        self.addrs = addrs;
        let bytes = self.addrs.iter().map(|a| a.to_vec()).collect();
        self.feed(Input::Addresses(bytes));
    }

    // ----- audio events -----------------------------------------------------------------

    fn audio_event(&mut self, event: AudioEvent) {
        match event {
            AudioEvent::CaptureStarted(unix_us) => self.emit(NodeEvent::CaptureStarted { unix_us }),
            AudioEvent::PlayoutStarted(unix_us) => self.emit(NodeEvent::PlayoutStarted { unix_us }),
            AudioEvent::SourceEnded => self.emit(NodeEvent::SourceEnded),
            AudioEvent::Error(message) => self.emit(NodeEvent::Error { message }),
            AudioEvent::Speaking(who, active) => {
                let key = who.unwrap_or(self.me);
                self.emit(NodeEvent::Speaking {
                    key,
                    name: self.core.name_of(&key),
                    active,
                });
            }
            AudioEvent::FirstFrame(key, unix_us) => {
                self.emit(NodeEvent::Hearing {
                    key,
                    name: self.core.name_of(&key),
                    unix_us,
                });
            }
            AudioEvent::Stats(list) => {
                self.report_loss(&list);
                let in_room = self.core.membership().is_some();
                let speakers = list
                    .into_iter()
                    .map(|(key, s)| SpeakerStats {
                        key,
                        name: if in_room {
                            self.core.name_of(&key)
                        } else {
                            String::new()
                        },
                        received: s.jitter.received,
                        played: s.jitter.played,
                        late: s.jitter.late,
                        lost: s.jitter.lost,
                        fec: s.jitter.fec_recovered,
                        concealed: s.jitter.concealed,
                        jitter_ms: s.jitter.target_delay_ms,
                        depth_ms: s.jitter.depth_ms,
                    })
                    .collect();
                let (served, dropped) = {
                    let links = self
                        .outbound
                        .links
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    (links.len(), links.iter().map(|l| l.stats().dropped).sum())
                };
                self.emit(NodeEvent::Stats {
                    speakers,
                    peers: self.connected.len(),
                    frames_sent: self.outbound.frames.load(Ordering::Relaxed),
                    frames_dropped: dropped,
                    listeners_served: served,
                    loss_hint_pct: self.outbound.loss_hint.load(Ordering::Relaxed) as u8,
                    bitrate_bps: self.outbound.bitrate_bps.load(Ordering::Relaxed) as u32,
                    sending_copies: self.outbound.copies.load(Ordering::Relaxed),
                });
            }
            AudioEvent::Flooding(peer) => {
                if let Some(k) = ids::public_key(&peer) {
                    self.feed(Input::Flooding(k));
                }
            }
        }
    }
}

impl Driver {
    /// Tells each speaker heard how much of its audio the playout missed since the last stats
    /// (it sizes its forward error correction from that: `ruang_audio::loss`).
    fn report_loss(&mut self, list: &[(PublicKey, ruang_audio::jitter::SpeakerStats)]) {
        let mut now = HashMap::with_capacity(list.len());
        for (key, stats) in list {
            let before = self.heard_before.get(key);
            if let Some(permille) = before.and_then(|b| loss::measured_loss(b, &stats.jitter))
                && let Some(peer) = ids::peer_id(key)
            {
                self.client.report_audio_loss(peer, permille);
            }
            now.insert(*key, stats.jitter);
        }
        // Only speakers in this report are kept: the map is as bounded as the mixer.
        self.heard_before = now;
    }
}

/// Says how a join goes (see [`NodeEvent::Progress`]).
struct Progress {
    events: broadcast::Sender<NodeEvent>,
    hide_ip: bool,
}

impl Progress {
    fn say(&self, message: String) {
        let _ = self.events.send(NodeEvent::Progress { message });
    }
}

/// What a join tries: the ticket's addresses by kind, for progress and failure lines.
struct Tried {
    direct: usize,
    private: usize,
    relays: Vec<String>,
}

impl Tried {
    fn of(addrs: &[Multiaddr]) -> Tried {
        let mut t = Tried {
            direct: 0,
            private: 0,
            relays: Vec::new(),
        };
        for a in addrs {
            match relay_part(a).as_ref().and_then(peer_of) {
                Some(relay) => {
                    let relay = short_peer(&relay);
                    if !t.relays.contains(&relay) {
                        t.relays.push(relay);
                    }
                }
                None if addrs::is_private(a) => t.private += 1,
                None => t.direct += 1,
            }
        }
        t
    }

    /// What to try next, in one sentence.
    fn hint(&self, hide_ip: bool) -> &'static str {
        if self.relays.is_empty() && hide_ip {
            "with --hide-ip only hosts reachable through a relay can be joined: ask for a \
             ticket with a p2p-circuit address"
        } else if self.relays.is_empty() && self.direct == 0 {
            "the host has only LAN addresses: on another network it needs a relay (a \
             --bootstrap node that runs --relay, or --via-relay) and a new ticket"
        } else if self.relays.is_empty() {
            "the host may be behind a NAT or firewall: it can use a relay (a --bootstrap node \
             that runs --relay, or --via-relay) and share the new ticket"
        } else {
            "the relay may be down or full, or the host gone: try again in a moment, or ask \
             for a fresh ticket"
        }
    }
}

impl std::fmt::Display for Tried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.direct > 0 {
            parts.push(format!("{} public", self.direct));
        }
        if self.private > 0 {
            parts.push(format!("{} LAN", self.private));
        }
        if !self.relays.is_empty() {
            parts.push(format!("through relay {}", self.relays.join(", ")));
        }
        write!(f, "{}", parts.join(", "))
    }
}

/// `12D3…abcd`: enough of a peer id to tell relays apart in one line.
fn short_peer(peer: &PeerId) -> String {
    let s = peer.to_string();
    let tail = &s[s.len().saturating_sub(6)..];
    format!("…{tail}")
}

/// "connected to the host directly over QUIC" / "... through relay …abcd".
fn describe_path(addr: &Multiaddr) -> String {
    use ruang_net::multiaddr::Protocol;
    if let Some(relay) = relay_part(addr).as_ref().and_then(peer_of) {
        return format!("connected to the host through relay {}", short_peer(&relay));
    }
    let over = if addr.iter().any(|p| p == Protocol::QuicV1) {
        "QUIC"
    } else if addr.iter().any(|p| p == Protocol::Tls) {
        "WebSocket inside TLS"
    } else if addr
        .iter()
        .any(|p| matches!(p, Protocol::Ws(_) | Protocol::Wss(_)))
    {
        "WebSocket"
    } else {
        "TCP"
    };
    format!("connected to the host directly over {over}")
}

/// Connects a join to the room's host (or whoever the addresses lead to), saying how it goes:
/// the member reached and the addresses it was reached at, or what was tried and why it
/// failed, with a hint, in one line.
async fn join_dial(
    client: &Client,
    host: PublicKey,
    addrs: Vec<Multiaddr>,
    progress: &Progress,
) -> Result<(PublicKey, Vec<Multiaddr>), String> {
    if addrs.is_empty() {
        return Err("the ticket has no addresses it can use".into());
    }
    let tried = Tried::of(&addrs);
    progress.say(format!("connecting to the host ({tried})"));
    let host_peer = ids::peer_id(&host);
    let mut last_error = String::from("no address answered");
    // Every address of a peer at once (direct, LAN and relayed race; the first that works
    // is kept), the host's first. A dial that fails at once (a relayed dial while the
    // connection to its relay is still being set up is cancelled) is tried again.
    let mut by_peer: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
    for addr in &addrs {
        let Some(target) = peer_of(addr).or(host_peer) else {
            continue;
        };
        match by_peer.iter_mut().find(|(p, _)| *p == target) {
            Some((_, list)) => list.push(addr.clone()),
            None => by_peer.push((target, vec![addr.clone()])),
        }
    }
    by_peer.sort_by_key(|(p, _)| Some(*p) != host_peer);
    // Relayed addresses need their relay connected first: a circuit dialled while the
    // connection to its relay is still being set up (a bootstrap dial to the same node, say)
    // is cancelled. So connect to the relays, all at once, then dial.
    let relays: HashSet<Multiaddr> = addrs.iter().filter_map(relay_part).collect();
    let began = Instant::now();
    let (peer, peer_addrs) = loop {
        futures::future::join_all(relays.iter().map(|r| client.dial(r.clone()))).await;
        if let Some(reached) = dial_round(client, &by_peer, &mut last_error).await {
            break reached;
        }
        if relays.is_empty() || began.elapsed() + JOIN_RETRY_PAUSE >= JOIN_RELAYED_PATIENCE {
            return Err(format!(
                "tried {tried}: {last_error}. Hint: {}",
                tried.hint(progress.hide_ip)
            ));
        }
        debug!(error = %last_error, "join round failed");
        progress.say("not reached yet; trying again through the relay".to_string());
        tokio::time::sleep(JOIN_RETRY_PAUSE).await;
    };
    let Some(key) = ids::public_key(&peer) else {
        return Err(format!("{peer} is not a ruang node"));
    };
    let path = client
        .connection_addrs(peer)
        .await
        .ok()
        .and_then(|list| list.into_iter().max_by_key(ruang_net::connection_rank));
    let how = match &path {
        Some(a) => describe_path(a),
        None => "connected".to_string(),
    };
    progress.say(format!("{how}; fetching the room's log"));
    Ok((key, peer_addrs))
}

/// One round of a join's dials: each peer in turn with all its addresses at once, each tried
/// again while it fails quickly (see [`JOIN_DIAL_QUICK_FAILURE`]). The first peer reached, with
/// its addresses; `last_error` keeps the last failure.
async fn dial_round(
    client: &Client,
    by_peer: &[(PeerId, Vec<Multiaddr>)],
    last_error: &mut String,
) -> Option<(PeerId, Vec<Multiaddr>)> {
    for (target, list) in by_peer {
        for attempt in 1..=JOIN_DIAL_TRIES {
            let started = Instant::now();
            match client.dial_peer(*target, list.clone()).await {
                Ok(()) => return Some((*target, list.clone())),
                Err(e) => {
                    *last_error = e.to_string();
                    debug!(%target, attempt, error = %e, "join dial failed");
                    if started.elapsed() > JOIN_DIAL_QUICK_FAILURE {
                        break;
                    }
                    tokio::time::sleep(JOIN_DIAL_QUICK_FAILURE).await;
                }
            }
        }
    }
    None
}
