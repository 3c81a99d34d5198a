//! 200 simulated peers hold replicas of one room and exchange its events over a lossy network
//! (10% loss, 5–80 ms latency) that is partitioned in two for seven seconds and then heals.
//! Moderators on both sides act concurrently during the partition. Gossip spreads events; a
//! periodic anti-entropy sync by DAG heads repairs what loss and the partition withheld. After
//! the authoring stops, every replica must hold the same log and the same state.

use rand::RngExt;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use ruang_proto::Identity;
use ruang_proto::room::{EventBody, EventHash, Genesis, Info, Insert, Role, Room, Visibility};
use ruang_testkit::Seed;
use ruang_testkit::sim::{Links, Network, pick};

const PEERS: usize = 200;
const GOSSIP_FANOUT: usize = 4;
const SYNC_INTERVAL_MS: u64 = 1_000;
const SYNC_PAGE: usize = 128;
const PARTITION_AT_MS: u64 = 5_000;
const HEAL_AT_MS: u64 = 12_000;
const AUTHORING_ENDS_MS: u64 = 20_000;
const RUN_UNTIL_MS: u64 = 45_000;
const MODERATORS: usize = 6;

enum Msg {
    Event(Vec<u8>),
    SyncRequest(Vec<EventHash>),
    SyncResponse(Vec<Vec<u8>>),
    SyncTimer,
    ActTimer,
}

struct Peer {
    identity: Identity,
    room: Room,
}

/// One action a peer takes, chosen from what its own view of the room allows.
fn choose_action(
    peer: &Peer,
    everyone: &[ruang_proto::PublicKey],
    rng: &mut impl rand::Rng,
) -> Option<EventBody> {
    let state = peer.room.state();
    let me = peer.identity.public();
    let anyone = everyone[pick(rng, everyone.len())];
    match state.role(&me) {
        Role::Host | Role::Moderator => {
            let speakers: Vec<_> = state.speakers.iter().copied().collect();
            let choice = rng.random_range(0..10);
            Some(match choice {
                0..=3 if !state.hands.is_empty() => EventBody::InviteSpeaker {
                    who: *state.hands.iter().next()?,
                },
                4 if !speakers.is_empty() => EventBody::Mute {
                    who: speakers[pick(rng, speakers.len())],
                },
                5 if !state.muted.is_empty() => EventBody::Unmute {
                    who: *state.muted.iter().next()?,
                },
                6 if !speakers.is_empty() => EventBody::MoveToAudience {
                    who: speakers[pick(rng, speakers.len())],
                },
                7 => EventBody::Ban { who: anyone },
                8 if !state.banned.is_empty() => EventBody::Unban {
                    who: *state.banned.iter().next()?,
                },
                9 if state.role(&me) == Role::Host && !state.moderators.is_empty() => {
                    EventBody::Demote {
                        who: *state.moderators.iter().next()?,
                    }
                }
                _ => EventBody::Kick { who: anyone },
            })
        }
        Role::Speaker => Some(if rng.random_bool(0.3) {
            EventBody::StepDown
        } else {
            EventBody::Recording {
                on: !state.recording.contains(&me),
            }
        }),
        Role::Listener if state.invited.contains(&me) => Some(EventBody::AcceptInvite),
        Role::Listener if state.hands.contains(&me) => {
            rng.random_bool(0.2).then_some(EventBody::LowerHand)
        }
        Role::Listener => Some(EventBody::RaiseHand),
        Role::Banned => None,
    }
}

#[test]
fn two_hundred_peers_converge_through_loss_and_a_healed_partition() {
    let seed = Seed::from_env("sim_200_peers");
    let mut net: Network<Msg> = Network::new(
        PEERS,
        Links {
            min_latency_ms: 5,
            max_latency_ms: 80,
            loss: 0.10,
        },
        seed.value(),
    );
    let mut key_rng = ChaCha20Rng::seed_from_u64(seed.value());
    let identities: Vec<Identity> = (0..PEERS)
        .map(|_| Identity::generate(&mut key_rng))
        .collect();
    let everyone: Vec<_> = identities.iter().map(|i| i.public()).collect();

    let genesis = Genesis {
        info: Info {
            title: "sim".into(),
            ..Info::default()
        },
        visibility: Visibility::Public,
        successors: vec![everyone[1]],
        nonce: [0; 16],
    };
    let (mut origin, genesis) = Room::create(&identities[0], genesis, 0, &mut key_rng).unwrap();
    // The host promotes moderators before the room opens up, on both sides of the coming split.
    for moderator in &everyone[1..=MODERATORS] {
        origin
            .author(&identities[0], EventBody::Promote { who: *moderator }, 1)
            .unwrap();
    }
    let opening: Vec<Vec<u8>> = origin
        .events()
        .skip(1)
        .map(|(e, _)| e.wire().to_vec())
        .collect();

    let mut peers: Vec<Peer> = identities
        .into_iter()
        .map(|identity| {
            let mut room = Room::from_genesis_wire(origin.id(), genesis.wire()).unwrap();
            for w in &opening {
                assert!(matches!(room.insert_wire(w), Insert::New { .. }));
            }
            Peer { identity, room }
        })
        .collect();

    for p in 0..PEERS {
        let first_sync = net.rng().random_range(0..SYNC_INTERVAL_MS);
        net.timer(p, first_sync, Msg::SyncTimer);
        // Moderators act often; a third of the others act a few times each.
        let acts = if p <= MODERATORS {
            12
        } else if p % 3 == 0 {
            3
        } else {
            0
        };
        for _ in 0..acts {
            let at = net.rng().random_range(1..AUTHORING_ENDS_MS);
            net.timer(p, at, Msg::ActTimer);
        }
    }

    let mut partitioned = false;
    let mut healed = false;
    let mut authored = 0usize;
    while let Some(d) = net.next(RUN_UNTIL_MS) {
        if !partitioned && d.at >= PARTITION_AT_MS {
            // Even and odd peers: the host (0) and moderators 2, 4, 6 on one side; 1, 3, 5 on the other.
            net.partition(|p| (p % 2) as u32);
            partitioned = true;
        }
        if !healed && d.at >= HEAL_AT_MS {
            net.heal();
            healed = true;
        }
        let me = d.to;
        match d.msg {
            Msg::Event(wire) => match peers[me].room.insert_wire(&wire) {
                Insert::New { .. } => {
                    for _ in 0..GOSSIP_FANOUT {
                        let to = pick(net.rng(), PEERS);
                        net.send(me, to, Msg::Event(wire.clone()));
                    }
                }
                Insert::Pending { .. } => {
                    let heads = peers[me].room.heads();
                    net.send(me, d.from, Msg::SyncRequest(heads));
                }
                Insert::Known => {}
                Insert::Rejected(r) => panic!("a valid event was rejected: {r}"),
            },
            Msg::SyncTimer => {
                let to = pick(net.rng(), PEERS);
                let heads = peers[me].room.heads();
                net.send(me, to, Msg::SyncRequest(heads));
                net.timer(me, SYNC_INTERVAL_MS, Msg::SyncTimer);
            }
            Msg::SyncRequest(heads) => {
                let page: Vec<Vec<u8>> = peers[me]
                    .room
                    .missing_for(&heads, SYNC_PAGE)
                    .into_iter()
                    .map(|e| e.wire().to_vec())
                    .collect();
                if !page.is_empty() {
                    net.send(me, d.from, Msg::SyncResponse(page));
                }
            }
            Msg::SyncResponse(page) => {
                let full = page.len() == SYNC_PAGE;
                for wire in page {
                    if let Insert::Rejected(r) = peers[me].room.insert_wire(&wire) {
                        panic!("a valid event was rejected: {r}");
                    }
                }
                if full {
                    let heads = peers[me].room.heads();
                    net.send(me, d.from, Msg::SyncRequest(heads));
                }
            }
            Msg::ActTimer => {
                let body = choose_action(&peers[me], &everyone, net.rng());
                if let Some(body) = body {
                    let peer = &mut peers[me];
                    if let Ok(event) = peer.room.author(&peer.identity, body, d.at) {
                        authored += 1;
                        let wire = event.wire().to_vec();
                        for _ in 0..GOSSIP_FANOUT {
                            let to = pick(net.rng(), PEERS);
                            net.send(me, to, Msg::Event(wire.clone()));
                        }
                    }
                }
            }
        }
    }

    let stats = net.stats().clone();
    eprintln!("authored {authored} events; network {stats:?}");
    assert!(
        authored >= 100,
        "the scenario should produce a real log, got {authored} events"
    );
    assert!(
        stats.lost > 0 && stats.partitioned > 0,
        "loss and the partition took effect"
    );

    let reference = &peers[0].room;
    let merges = reference
        .events()
        .filter(|(e, _)| e.parents.len() > 1)
        .count();
    let overridden = reference.events().filter(|(_, o)| o.is_some()).count();
    eprintln!(
        "log {} events, {merges} merges, {overridden} overridden by concurrent events",
        reference.len()
    );
    assert!(
        merges > 0,
        "the partition produced concurrent branches that were merged"
    );
    for (i, p) in peers.iter().enumerate() {
        assert_eq!(p.room.pending_len(), 0, "peer {i} still waits for parents");
        assert_eq!(
            p.room.len(),
            reference.len(),
            "peer {i} holds a different number of events"
        );
        assert_eq!(
            p.room.heads(),
            reference.heads(),
            "peer {i} has different heads"
        );
        assert_eq!(
            p.room.state(),
            reference.state(),
            "peer {i} computed a different state"
        );
    }
}
