//! Rooms of simulated nodes: the real room logic of ruang (`ruang-session` cores) over the
//! seeded network model of `ruang_testkit::rooms`, in virtual time. One module per behaviour;
//! every test prints its seed and replays with `SEED=<n>`.

mod directory;
mod held_chat;
mod log_spam;
mod neighbours;
mod partition;
mod presence;
mod private_ban;
mod scale;
mod succession;
mod sync;

use ruang_proto::room::{EventBody, Info};
use ruang_proto::{PublicKey, Ticket};
use ruang_session::{Answer, Command, HostOptions, JoinTarget, NodeEvent};
use ruang_testkit::rooms::{NodeSettings, Sim};
use ruang_testkit::sim::Links;

/// Links of 10–50 ms, no loss.
pub fn calm() -> Links {
    Links {
        min_latency_ms: 10,
        max_latency_ms: 50,
        loss: 0.0,
    }
}

/// A simulation with default node settings.
pub fn sim(links: Links, seed: u64) -> Sim {
    Sim::new(links, NodeSettings::default(), seed)
}

/// Peer `host` opens a room (public unless `private`) with `successors`; returns its ticket.
pub fn host(sim: &mut Sim, host: usize, successors: Vec<PublicKey>, private: bool) -> Ticket {
    let options = HostOptions {
        info: Info {
            title: "simulated".into(),
            ..Info::default()
        },
        successors,
        private,
    };
    let id = sim.command(host, Command::Host(options));
    match sim.reply(host, id) {
        Some(Ok(Answer::Joined(joined))) => joined.ticket.clone(),
        other => panic!("hosting failed: {other:?}"),
    }
}

/// Peers `who` join by `ticket`; runs until every one of them is in (at most 10 s).
pub fn join_all(sim: &mut Sim, who: &[usize], ticket: &Ticket) {
    let ids: Vec<(usize, u64)> = who
        .iter()
        .map(|&p| {
            (
                p,
                sim.command(p, Command::Join(JoinTarget::Ticket(ticket.clone()))),
            )
        })
        .collect();
    let deadline = sim.now() + 10_000;
    while sim.now() < deadline && ids.iter().any(|&(p, id)| sim.reply(p, id).is_none()) {
        sim.run_for(50);
    }
    for (p, id) in ids {
        match sim.reply(p, id) {
            Some(Ok(Answer::Joined(_))) => {}
            other => panic!("peer {p} did not join: {other:?}"),
        }
    }
}

/// The host invites `speakers` (in the room already) and they accept: a stage of host and
/// speakers. On a lossy network an invitation can be lost and reach a speaker only when the
/// log is repaired, so a speaker not invited yet tries again, for up to 30 simulated seconds.
pub fn stage(sim: &mut Sim, host: usize, speakers: &[usize]) {
    for &s in speakers {
        let who = sim.peers[s].core.key();
        sim.command(host, Command::Act(EventBody::InviteSpeaker { who }));
    }
    sim.run_for(2_000);
    let deadline = sim.now() + 30_000;
    for &s in speakers {
        loop {
            let id = sim.command(s, Command::Act(EventBody::AcceptInvite));
            match sim.reply(s, id) {
                Some(Ok(_)) => break,
                Some(Err(_)) if sim.now() < deadline => sim.run_for(500),
                other => panic!("speaker {s} could not accept its invitation: {other:?}"),
            }
        }
    }
}

/// Whether peer `p` said something matching `what` (a notice, error or chat line).
pub fn said(sim: &Sim, p: usize, what: impl Fn(&NodeEvent) -> bool) -> Option<u64> {
    sim.peers[p]
        .events
        .iter()
        .find(|(_, e)| what(e))
        .map(|(at, _)| *at)
}
