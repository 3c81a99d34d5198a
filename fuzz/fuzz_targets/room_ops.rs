//! Sequences of room events driven by the input: six keys (host, two successors, three
//! others) sign any body, on any parents they pick among the events so far, with or without
//! their own previous event (forks), with right or wrong lamports. After the sequence, the
//! incrementally kept state must equal a re-run of the order from scratch, and a replica fed the
//! same events in reverse order must reach the same state and outcomes.
//!
//! Signing dominated the run time, so signed events are memoised: ed25519 signatures are
//! deterministic, and libFuzzer's mutants share long prefixes with their parents, so the same
//! event (same author, parents, lamport, time and body) comes back often. The memo is bounded.
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ruang_proto::room::{Event, EventBody, EventHash, Genesis, Info, Room, Visibility};
use ruang_proto::signed::{self, Verified};
use ruang_proto::{Identity, PublicKey};

const ACTORS: usize = 6;
const MAX_OPS: usize = 64;
/// Signed events kept for reuse; the memo is cleared when it reaches this size.
const MEMO_CAP: usize = 200_000;

/// What determines a signed event here: author index, parents, lamport, time, body kind, `who`.
type MemoKey = (usize, Vec<EventHash>, u64, u64, u8, usize);

thread_local! {
    static MEMO: RefCell<HashMap<MemoKey, Verified<Event>>> = RefCell::new(HashMap::new());
}

/// Signs `event` by `actors[actor]`, or returns the copy signed earlier.
fn sign_memoised(f: &Fixture, key: MemoKey, event: Event) -> Option<Verified<Event>> {
    MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        if let Some(v) = memo.get(&key) {
            return Some(v.clone());
        }
        let signed = signed::sign(&f.actors[key.0], event).ok()?;
        if memo.len() >= MEMO_CAP {
            memo.clear();
        }
        memo.insert(key, signed.clone());
        Some(signed)
    })
}

struct Fixture {
    actors: Vec<Identity>,
    genesis: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let actors: Vec<Identity> = (0..ACTORS).map(|_| Identity::generate(&mut rng)).collect();
        let genesis = Genesis {
            info: Info {
                title: "fuzz".into(),
                ..Info::default()
            },
            visibility: Visibility::Public,
            successors: vec![actors[1].public(), actors[2].public()],
            nonce: [0; 16],
        };
        let (_, g) = Room::create(&actors[0], genesis, 0, &mut rng).expect("genesis");
        Fixture {
            genesis: g.wire().to_vec(),
            actors,
        }
    })
}

fn body(kind: u8, who: PublicKey) -> EventBody {
    match kind % 19 {
        0 => EventBody::RaiseHand,
        1 => EventBody::LowerHand,
        2 => EventBody::InviteSpeaker { who },
        3 => EventBody::AcceptInvite,
        4 => EventBody::StepDown,
        5 => EventBody::MoveToAudience { who },
        6 => EventBody::Mute { who },
        7 => EventBody::Unmute { who },
        8 => EventBody::Promote { who },
        9 => EventBody::Demote { who },
        10 => EventBody::Kick { who },
        11 => EventBody::Ban { who },
        12 => EventBody::Unban { who },
        13 => EventBody::Recording { on: who.0[0] % 2 == 0 },
        14 => EventBody::HandOff { to: who },
        15 => EventBody::ClaimHost,
        16 => EventBody::EndRoom,
        17 => EventBody::RemoveSuccessor { who },
        _ => EventBody::UpdateInfo(Info {
            title: "renamed".into(),
            ..Info::default()
        }),
    }
}

fn outcomes(r: &Room) -> Vec<(EventHash, Option<String>)> {
    let mut out: Vec<_> = r
        .events()
        .map(|(e, o)| (e.hash(), o.map(|o| o.to_string())))
        .collect();
    out.sort();
    out
}

fuzz_target!(|bytes: &[u8]| {
    let f = fixture();
    let genesis = signed::verify::<Event>(&f.genesis).expect("valid genesis");
    let mut room = Room::from_genesis(genesis.clone()).expect("a genesis");
    let mut known: Vec<Verified<Event>> = vec![genesis];
    for op in bytes.chunks_exact(5).take(MAX_OPS) {
        let actor_index = op[0] as usize % ACTORS;
        let actor = &f.actors[actor_index];
        let who_index = op[2] as usize % ACTORS;
        let who = f.actors[who_index].public();
        // Parents: one or two events picked by index, plus (unless bit 7) the actor's own tip.
        let mut parents = vec![known[op[3] as usize % known.len()].hash()];
        let second = known[op[4] as usize % known.len()].hash();
        if op[1] & 0x40 != 0 && !parents.contains(&second) {
            parents.push(second);
        }
        if op[1] & 0x80 == 0
            && let Some(tip) = room.tip_of(&actor.public())
            && !parents.contains(&tip)
        {
            parents.push(tip);
        }
        let mut lamport = 1 + parents
            .iter()
            .filter_map(|p| room.get(p).map(|e| e.lamport))
            .max()
            .unwrap_or(0);
        if op[1] & 0x20 != 0 {
            lamport = lamport.wrapping_add(u64::from(op[4] % 3));
        }
        let created_at = u64::from(op[3]) * 1_000;
        let kind = op[1] & 0x1f;
        let event = Event {
            room: room.id(),
            author: actor.public(),
            parents: parents.clone(),
            lamport,
            created_at,
            body: body(kind, who),
        };
        let key = (actor_index, parents, lamport, created_at, kind, who_index);
        let Some(signed) = sign_memoised(f, key, event) else {
            continue;
        };
        let _ = room.insert(signed.clone());
        if room.contains(&signed.hash()) {
            known.push(signed);
        }
    }
    let incremental = room.state().clone();
    let kept = outcomes(&room);
    let mut reverse = Room::from_genesis(known[0].clone()).expect("a genesis");
    for e in known.iter().skip(1).rev() {
        let _ = reverse.insert(e.clone());
    }
    assert_eq!(reverse.pending_len(), 0);
    assert_eq!(reverse.state(), &incremental, "another delivery order diverged");
    assert_eq!(outcomes(&reverse), kept, "outcomes diverged");
    assert_eq!(room.recompute(), &incremental, "incremental state differs from a re-run");
    assert_eq!(outcomes(&room), kept);
});
