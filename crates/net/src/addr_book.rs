//! A small bounded memory of peers' addresses, for dialling by peer id with QUIC first.

use std::collections::{HashMap, VecDeque};

use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};

use crate::{
    config::Transport,
    limits::{MAX_ADDRESS_BOOK_PEERS, MAX_ADDRS_PER_PEER},
    transport::{connection_rank, transport_supports},
};

/// Per peer, the most recently learnt addresses; the least recently added peer is forgotten
/// first when full.
#[derive(Debug)]
pub(crate) struct AddrBook {
    transport: Transport,
    peers: HashMap<PeerId, VecDeque<Multiaddr>>,
    order: VecDeque<PeerId>,
}

impl AddrBook {
    pub(crate) fn new(transport: Transport) -> Self {
        AddrBook {
            transport,
            peers: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Remembers `addr` for `peer` (stripped of a trailing `/p2p/<peer>`). Addresses this
    /// transport cannot dial, unspecified ones and loop-free nonsense are skipped. Returns
    /// whether it was new.
    pub(crate) fn add(&mut self, peer: PeerId, addr: Multiaddr) -> bool {
        let addr = strip_peer(addr, peer);
        if !transport_supports(self.transport, &addr) || is_unspecified(&addr) {
            return false;
        }
        if !self.peers.contains_key(&peer) {
            if self.peers.len() >= MAX_ADDRESS_BOOK_PEERS
                && let Some(old) = self.order.pop_front()
            {
                self.peers.remove(&old);
            }
            self.order.push_back(peer);
        }
        let list = self.peers.entry(peer).or_default();
        if list.contains(&addr) {
            return false;
        }
        if list.len() >= MAX_ADDRS_PER_PEER {
            list.pop_front();
        }
        list.push_back(addr);
        true
    }

    /// Known addresses of `peer`, best first (QUIC, then other direct, then relayed).
    pub(crate) fn get(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let mut out: Vec<Multiaddr> = self
            .peers
            .get(peer)
            .map(|l| l.iter().rev().cloned().collect())
            .unwrap_or_default();
        out.sort_by_key(|a| std::cmp::Reverse(connection_rank(a)));
        out
    }

    /// Known QUIC addresses of `peer`.
    pub(crate) fn quic(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.get(peer)
            .into_iter()
            .filter(|a| connection_rank(a) == 2)
            .collect()
    }
}

/// `addr` without a trailing `/p2p/<peer>`.
pub(crate) fn strip_peer(mut addr: Multiaddr, peer: PeerId) -> Multiaddr {
    if let Some(Protocol::P2p(p)) = addr.iter().last()
        && p == peer
    {
        addr.pop();
    }
    addr
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_quic_first() {
        let mut book = AddrBook::new(Transport::QuicAndTcp);
        let p = PeerId::random();
        assert!(book.add(p, "/ip4/127.0.0.1/tcp/1".parse().unwrap()));
        assert!(book.add(p, "/ip4/127.0.0.1/udp/1/quic-v1".parse().unwrap()));
        assert!(!book.add(p, "/ip4/127.0.0.1/tcp/1".parse().unwrap()));
        assert!(!book.add(p, "/ip4/0.0.0.0/tcp/1".parse().unwrap()));
        assert!(!book.add(p, "/memory/5".parse().unwrap()));
        let got = book.get(&p);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].to_string(), "/ip4/127.0.0.1/udp/1/quic-v1");
        for port in 2..100u16 {
            book.add(p, format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap());
        }
        assert_eq!(book.get(&p).len(), MAX_ADDRS_PER_PEER);
    }
}
