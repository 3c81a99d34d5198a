//! Per-address budgets for incoming connections: one remote IP address may hold at most
//! [`MAX_PENDING_PER_IP`] connections being set up and [`MAX_INBOUND_PER_IP`] established
//! ones, and start [`HANDSHAKE_BURST_PER_IP`] at once, then [`HANDSHAKES_PER_SECOND_PER_IP`]
//! (QUIC attempts over that rate are dropped by the listener before their handshake).
//!
//! The node's own bounds (connection_limits: [`crate::limits::MAX_PENDING_CONNECTIONS`] being
//! set up, [`crate::limits::MAX_CONNECTIONS`] in all) keep it alive, but one machine could fill
//! them: 130 TCP connections that never sent a byte took every pending slot, and every join
//! failed for as long as they stayed open. With this budget such a machine gets a few slots,
//! each freed by the handshake timeout ([`crate::limits::HANDSHAKE_TIMEOUT`]), and everyone
//! else gets the rest.
//!
//! Not counted: loopback addresses (this machine's own processes: a local relay, tests and
//! benchmarks that run hundreds of nodes on 127.0.0.1), relayed connections (their address is
//! the relay's, and the relay has its own limits), and connections this node dialled.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Instant,
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    multiaddr::Protocol,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm, dummy,
    },
};

use crate::limits::{
    HANDSHAKE_BURST_PER_IP, HANDSHAKES_PER_SECOND_PER_IP, MAX_INBOUND_PER_IP, MAX_PENDING_PER_IP,
    MAX_RATED_IPS,
};
use crate::privacy::is_circuit;

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("{ip} has {count} {what} connections already (the most one address may have)")]
pub(crate) struct OverBudget {
    ip: IpAddr,
    count: u32,
    what: &'static str,
}

/// Why a connection was refused: its address started too many lately.
#[derive(Debug, thiserror::Error)]
#[error(
    "{ip} started more connections than one address may (a burst of {HANDSHAKE_BURST_PER_IP}, \
     then {HANDSHAKES_PER_SECOND_PER_IP} a second)"
)]
pub(crate) struct TooFast {
    ip: IpAddr,
}

/// Connections of one kind (being set up, or established) per address.
#[derive(Debug, Default)]
struct Tally {
    of: HashMap<ConnectionId, IpAddr>,
    per_ip: HashMap<IpAddr, u32>,
}

impl Tally {
    fn count(&self, ip: &IpAddr) -> u32 {
        self.per_ip.get(ip).copied().unwrap_or(0)
    }

    fn add(&mut self, id: ConnectionId, ip: IpAddr) {
        if self.of.insert(id, ip).is_none() {
            *self.per_ip.entry(ip).or_default() += 1;
        }
    }

    /// Counts connection `id` from `ip` unless `ip` has `cap` already.
    fn admit(
        &mut self,
        id: ConnectionId,
        ip: IpAddr,
        cap: u32,
        what: &'static str,
    ) -> Result<(), ConnectionDenied> {
        let count = self.count(&ip);
        if count >= cap {
            return Err(ConnectionDenied::new(OverBudget { ip, count, what }));
        }
        self.add(id, ip);
        Ok(())
    }

    fn remove(&mut self, id: ConnectionId) -> Option<IpAddr> {
        let ip = self.of.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        Some(ip)
    }
}

/// Handshakes one address may still start, and when that was counted.
#[derive(Debug, Clone, Copy)]
struct Tokens {
    left: f64,
    at: Instant,
}

/// How many connections each address may start, refilled over time.
#[derive(Debug, Default)]
struct Rate {
    of: HashMap<IpAddr, Tokens>,
}

impl Rate {
    /// Takes one handshake of `ip`'s at `now` if it has one left.
    fn take(&mut self, ip: IpAddr, now: Instant) -> bool {
        let burst = f64::from(HANDSHAKE_BURST_PER_IP);
        let refill = |t: &Tokens| {
            let elapsed = now.saturating_duration_since(t.at).as_secs_f64();
            (t.left + elapsed * HANDSHAKES_PER_SECOND_PER_IP).min(burst)
        };
        if !self.of.contains_key(&ip) && self.of.len() >= MAX_RATED_IPS {
            // Forget the addresses that are back to a full burst: they are like new ones.
            self.of.retain(|_, t| refill(t) < burst);
            if self.of.len() >= MAX_RATED_IPS {
                return true;
            }
        }
        let tokens = self.of.entry(ip).or_insert(Tokens {
            left: burst,
            at: now,
        });
        let left = refill(tokens);
        *tokens = Tokens {
            left: if left >= 1.0 { left - 1.0 } else { left },
            at: now.max(tokens.at),
        };
        left >= 1.0
    }
}

/// The handshakes each address may start, shared by the QUIC listener (which asks before a
/// handshake: an attempt over the rate is dropped unanswered, costing no TLS, no connection
/// state and no packet) and the [`Budget`] (TCP and WebSocket, after the socket is accepted).
#[derive(Debug, Clone, Default)]
pub(crate) struct HandshakeRate(Arc<Mutex<Rate>>);

impl HandshakeRate {
    /// Takes one handshake of `ip`'s now, if it has one left (always, for loopback).
    fn take(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = unmapped(ip);
        ip.is_loopback()
            || self
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(ip, now)
    }

    /// The QUIC listener's filter: an attempt from an address over its rate is dropped before
    /// its handshake.
    pub(crate) fn quic_filter(&self) -> libp2p::quic::IncomingFilter {
        let rate = self.clone();
        Arc::new(move |remote: SocketAddr| rate.take(remote.ip(), Instant::now()))
    }
}

/// `ip`, with an IPv4 address mapped into IPv6 as the IPv4 address it is.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The behaviour (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Budget {
    pending: Tally,
    established: Tally,
    rate: HandshakeRate,
}

/// The remote IP address a budget applies to, if any: none for loopback and relayed
/// connections.
fn budgeted_ip(local: &Multiaddr, remote: &Multiaddr) -> Option<IpAddr> {
    if is_circuit(local) || is_circuit(remote) {
        return None;
    }
    let ip = remote.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(unmapped(IpAddr::V6(ip))),
        _ => None,
    })?;
    (!ip.is_loopback()).then_some(ip)
}

impl Budget {
    /// A budget whose handshake rate is `rate` (shared with the QUIC listener).
    pub(crate) fn new(rate: HandshakeRate) -> Budget {
        Budget {
            rate,
            ..Budget::default()
        }
    }

    fn check_pending(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
        now: Instant,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = budgeted_ip(local, remote) else {
            return Ok(());
        };
        // QUIC attempts were counted by the listener, before their handshake.
        let quic = remote.iter().any(|p| matches!(p, Protocol::QuicV1));
        let count = self.pending.count(&ip);
        if count < MAX_PENDING_PER_IP && !quic && !self.rate.take(ip, now) {
            return Err(ConnectionDenied::new(TooFast { ip }));
        }
        self.pending.admit(id, ip, MAX_PENDING_PER_IP, "pending")
    }

    fn check_established(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.pending.remove(id);
        match budgeted_ip(local, remote) {
            Some(ip) => self
                .established
                .admit(id, ip, MAX_INBOUND_PER_IP, "established"),
            None => Ok(()),
        }
    }

    /// A connection is gone (failed while being set up, refused, or closed).
    fn gone(&mut self, id: ConnectionId) {
        self.pending.remove(id);
        self.established.remove(id);
    }
}

impl NetworkBehaviour for Budget {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.check_pending(id, local, remote, Instant::now())
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        _: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_established(id, local, remote)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ListenFailure(e) => self.gone(e.connection_id),
            FromSwarm::ConnectionClosed(e) => self.gone(e.connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_address_gets_a_bounded_share_and_its_slots_come_back() {
        let mut budget = Budget::default();
        let local = addr("/ip4/10.0.0.1/tcp/4001");
        let attacker = addr("/ip4/10.0.0.66/tcp/50000");
        let other = addr("/ip4/10.0.0.2/tcp/50000");
        let ids: Vec<ConnectionId> = (0..MAX_PENDING_PER_IP + 2)
            .map(|_| ConnectionId::new_unchecked(rand_id()))
            .collect();
        for id in &ids[..MAX_PENDING_PER_IP as usize] {
            assert!(budget.check_pending(*id, &local, &attacker, now()).is_ok());
        }
        let over = ids[MAX_PENDING_PER_IP as usize];
        assert!(
            budget
                .check_pending(over, &local, &attacker, now())
                .is_err()
        );
        // Someone else is not held back; nor this machine, nor a relayed connection.
        let guest = ConnectionId::new_unchecked(rand_id());
        assert!(budget.check_pending(guest, &local, &other, now()).is_ok());
        for _ in 0..100 {
            let id = ConnectionId::new_unchecked(rand_id());
            assert!(
                budget
                    .check_pending(id, &local, &addr("/ip4/127.0.0.1/udp/1/quic-v1"), now())
                    .is_ok()
            );
            assert!(
                budget
                    .check_pending(id, &addr("/p2p-circuit"), &attacker, now())
                    .is_ok()
            );
        }
        // A slot freed by a failed handshake is the attacker's again, one at a time.
        budget.gone(ids[0]);
        assert!(budget.check_pending(over, &local, &attacker, now()).is_ok());
        assert!(
            budget
                .check_pending(
                    ids[MAX_PENDING_PER_IP as usize + 1],
                    &local,
                    &attacker,
                    now()
                )
                .is_err()
        );
        // An IPv4 address mapped into IPv6 is the same address.
        let mapped = addr("/ip6/::ffff:10.0.0.66/tcp/1");
        assert!(
            budget
                .check_pending(
                    ConnectionId::new_unchecked(rand_id()),
                    &local,
                    &mapped,
                    now()
                )
                .is_err()
        );
    }

    #[test]
    fn established_connections_per_address_are_bounded_and_released_on_close() {
        let mut budget = Budget::default();
        let local = addr("/ip4/10.0.0.1/udp/4001/quic-v1");
        let remote = addr("/ip4/10.0.0.9/udp/5000/quic-v1");
        let mut open = Vec::new();
        for _ in 0..MAX_INBOUND_PER_IP {
            let id = ConnectionId::new_unchecked(rand_id());
            budget.check_pending(id, &local, &remote, now()).unwrap();
            budget.check_established(id, &local, &remote).unwrap();
            open.push(id);
        }
        // Nothing left pending: the pending budget is free again.
        assert_eq!(budget.pending.count(&"10.0.0.9".parse().unwrap()), 0);
        let id = ConnectionId::new_unchecked(rand_id());
        let later = now() + Duration::from_secs(1);
        budget.check_pending(id, &local, &remote, later).unwrap();
        assert!(budget.check_established(id, &local, &remote).is_err());
        budget.gone(id);
        budget.gone(open[0]);
        budget.check_pending(id, &local, &remote, later).unwrap();
        assert!(budget.check_established(id, &local, &remote).is_ok());
        assert!(budget.pending.of.is_empty());
    }

    #[test]
    fn one_address_starts_a_burst_then_a_few_a_second() {
        let mut budget = Budget::default();
        let local = addr("/ip4/10.0.0.1/tcp/4001");
        let attacker = addr("/ip4/10.0.0.66/tcp/5000");
        let t0 = now();
        // A key blocked as soon as it is in, dialling again at once: each handshake ends.
        let mut started = 0;
        for ms in 0..2_000u64 {
            let id = ConnectionId::new_unchecked(rand_id());
            let at = t0 + Duration::from_millis(ms);
            if budget.check_pending(id, &local, &attacker, at).is_ok() {
                started += 1;
                budget.gone(id);
            }
        }
        let most = HANDSHAKE_BURST_PER_IP as usize + (2.0 * HANDSHAKES_PER_SECOND_PER_IP) as usize;
        assert!(
            (HANDSHAKE_BURST_PER_IP as usize..=most).contains(&started),
            "{started} handshakes in 2 s"
        );
        // Others are not held back; this address is welcome again once it waited.
        let other = addr("/ip4/10.0.0.2/tcp/5000");
        let id = ConnectionId::new_unchecked(rand_id());
        assert!(
            budget
                .check_pending(id, &local, &other, t0 + Duration::from_secs(2))
                .is_ok()
        );
        let id = ConnectionId::new_unchecked(rand_id());
        let rested = t0 + Duration::from_secs(3);
        assert!(budget.check_pending(id, &local, &attacker, rested).is_ok());
        // QUIC attempts are the listener's to count (before their handshake), loopback's
        // nobody's.
        let filter = budget.rate.quic_filter();
        let quic_attacker: SocketAddr = "10.0.0.77:5000".parse().unwrap();
        let through = (0..200).filter(|_| filter(quic_attacker)).count();
        assert_eq!(through, HANDSHAKE_BURST_PER_IP as usize);
        assert!((0..200).all(|_| filter("127.0.0.1:5000".parse().unwrap())));
    }

    fn now() -> Instant {
        use std::sync::OnceLock;
        static T0: OnceLock<Instant> = OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    fn rand_id() -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(1_000_000);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}
