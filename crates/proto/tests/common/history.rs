//! A seeded generator of valid room histories with real concurrency: several writer replicas
//! author events on their own partial views and occasionally sync with each other.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use ruang_proto::Identity;
use ruang_proto::room::{Event, EventBody, Info, Room};
use ruang_proto::signed::Verified;

use super::{identity, room};

/// Number of actors: 0 is the host, 1 and 2 are successors, 9 is a listener nobody touches.
pub const ACTORS: u64 = 10;
/// The actor that is never invited, promoted or targeted: a pure listener.
pub const OUTSIDER: u64 = 9;

/// A generated history: the origin room and every event authored anywhere.
pub struct History {
    pub origin: Room,
    pub actors: Vec<Identity>,
    pub events: Vec<Verified<Event>>,
}

fn random_body(rng: &mut ChaCha8Rng, actors: &[Identity]) -> EventBody {
    // Targets exclude the outsider.
    let who = actors[(rng.next_u32() as usize) % (OUTSIDER as usize)].public();
    match rng.next_u32() % 40 {
        0..=5 => EventBody::RaiseHand,
        6..=7 => EventBody::LowerHand,
        8..=12 => EventBody::InviteSpeaker { who },
        13..=17 => EventBody::AcceptInvite,
        18..=19 => EventBody::StepDown,
        20..=21 => EventBody::MoveToAudience { who },
        22..=24 => EventBody::Mute { who },
        25..=26 => EventBody::Unmute { who },
        27..=28 => EventBody::Promote { who },
        29 => EventBody::Demote { who },
        30 => EventBody::Kick { who },
        31..=32 => EventBody::Ban { who },
        33 => EventBody::Unban { who },
        34 => EventBody::Recording {
            on: rng.next_u32().is_multiple_of(2),
        },
        35 => EventBody::UpdateInfo(Info {
            title: format!("title {}", rng.next_u32() % 100),
            ..Info::default()
        }),
        36 => EventBody::HandOff { to: who },
        37 => EventBody::ClaimHost,
        38 => EventBody::Kick { who },
        _ => {
            if rng.next_u32().is_multiple_of(8) {
                EventBody::EndRoom
            } else {
                EventBody::RaiseHand
            }
        }
    }
}

/// Generates a history from `seed` with `writers` replicas and `steps` attempted actions.
pub fn generate(seed: u64, writers: usize, steps: usize) -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let actors: Vec<Identity> = (0..ACTORS).map(identity).collect();
    let (origin, _) = room(&actors[0], vec![actors[1].public(), actors[2].public()]);
    let mut replicas: Vec<Room> = (0..writers).map(|_| super::replica(&origin)).collect();
    let mut events = Vec::new();
    for step in 0..steps {
        if rng.next_u32() % 5 == 0 && writers > 1 {
            // Sync two replicas fully, both ways.
            let a = (rng.next_u32() as usize) % writers;
            let b = (rng.next_u32() as usize) % writers;
            if a != b {
                let from_a: Vec<_> = replicas[a]
                    .missing_for(&replicas[b].heads(), usize::MAX)
                    .into_iter()
                    .cloned()
                    .collect();
                let from_b: Vec<_> = replicas[b]
                    .missing_for(&replicas[a].heads(), usize::MAX)
                    .into_iter()
                    .cloned()
                    .collect();
                for e in from_a {
                    replicas[b].insert(e);
                }
                for e in from_b {
                    replicas[a].insert(e);
                }
            }
            continue;
        }
        let w = (rng.next_u32() as usize) % writers;
        // Half the time the actor is someone with power in that replica's view, so moderation
        // actions are tried often enough to matter.
        let state = replicas[w].state();
        let mut powerful: Vec<_> = state.moderators.iter().copied().collect();
        powerful.push(state.host);
        let actor = if rng.next_u32() % 2 == 0 {
            let key = powerful[(rng.next_u32() as usize) % powerful.len()];
            actors.iter().position(|a| a.public() == key).unwrap_or(0)
        } else {
            (rng.next_u32() as usize) % (OUTSIDER as usize)
        };
        let body = random_body(&mut rng, &actors);
        if let Ok(e) = replicas[w].author(&actors[actor], body, 2_000 + step as u64) {
            events.push(e);
        }
    }
    History {
        origin,
        actors,
        events,
    }
}

/// Feeds `events` to a fresh replica of `origin` and returns it.
pub fn replay(origin: &Room, events: impl IntoIterator<Item = Verified<Event>>) -> Room {
    let mut r = super::replica(origin);
    for e in events {
        r.insert(e);
    }
    r
}

/// A seeded permutation of `items`.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
