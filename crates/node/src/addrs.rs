//! Our addresses as others see them: which to put in tickets, presence and announcements, in
//! what order, and small helpers on multiaddrs.

use std::net::IpAddr;

use ruang_net::multiaddr::Protocol;
use ruang_net::{Multiaddr, PeerId};

/// How reachable an address of ours is from elsewhere, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Reach {
    /// Confirmed reachable from outside (AutoNAT, or configured).
    Confirmed,
    /// Through a relay at a public address.
    PublicRelay,
    /// A public address we listen on, not (yet) confirmed.
    Public,
    /// A LAN, carrier-NAT or VPN address, or a relay at one: reachable from that network only.
    Private,
    /// Loopback: this machine only.
    Loopback,
}

/// Orders `listen` (our listen and relayed addresses) and `confirmed` (confirmed external ones)
/// into what we tell others: confirmed addresses, then circuits through public relays, other
/// public addresses, LAN ones; QUIC before TCP within each. LAN (and VPN, carrier-NAT)
/// addresses only when there is no public one: they tell people outside that network about it
/// and do not reach us from there, and people on it find us through mDNS. Loopback addresses
/// only when there is nothing else (a room on one machine). Unspecified addresses and
/// duplicates are dropped.
pub(crate) fn shareable(listen: &[Multiaddr], confirmed: &[Multiaddr]) -> Vec<Multiaddr> {
    let mut ranked: Vec<(Reach, bool, Multiaddr)> = Vec::new();
    for a in confirmed.iter().chain(listen) {
        if is_unspecified(a) || ranked.iter().any(|(_, _, b)| b == a) {
            continue;
        }
        let reach = match reach_of(a) {
            Reach::PublicRelay | Reach::Public if confirmed.contains(a) => Reach::Confirmed,
            reach => reach,
        };
        ranked.push((reach, !is_quic(a), a.clone()));
    }
    let only_loopback = ranked.iter().all(|(r, _, _)| *r == Reach::Loopback);
    ranked.retain(|(r, _, _)| only_loopback || *r != Reach::Loopback);
    let public = ranked.iter().any(|(r, _, _)| *r < Reach::Private);
    ranked.retain(|(r, _, _)| !public || *r != Reach::Private);
    ranked.sort_by_key(|(r, tcp, _)| (*r, *tcp));
    ranked.into_iter().map(|(_, _, a)| a).collect()
}

/// Whether `addr` reaches only its own network (LAN, VPN, carrier NAT, this machine).
pub(crate) fn is_private(addr: &Multiaddr) -> bool {
    matches!(reach_of(addr), Reach::Private | Reach::Loopback)
}

/// Where `addr` can be reached from, by its IP (a relayed address: by its relay's).
fn reach_of(addr: &Multiaddr) -> Reach {
    let relayed = addr.iter().any(|p| p == Protocol::P2pCircuit);
    match first_ip(addr) {
        Some(ip) if ip.is_loopback() => Reach::Loopback,
        Some(ip) if is_public(ip) => {
            if relayed {
                Reach::PublicRelay
            } else {
                Reach::Public
            }
        }
        // DNS names are taken as public.
        None if relayed => Reach::PublicRelay,
        None => Reach::Public,
        Some(_) => Reach::Private,
    }
}

/// The first IP address in `addr`, if it has one.
fn first_ip(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Whether `ip` is routable on the internet (not private, carrier-grade NAT, link-local,
/// loopback, documentation-free checks aside).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // 100.64.0.0/10: carrier-grade NAT (and some VPNs).
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// The peer id at the end of `addr`, if any.
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter()
        .filter_map(|p| match p {
            Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .last()
}

/// The relay's own address (with its `/p2p/<relay>`) in a relayed address, if it is one.
pub(crate) fn relay_part(addr: &Multiaddr) -> Option<Multiaddr> {
    let mut relay = Multiaddr::empty();
    for p in addr.iter() {
        if p == Protocol::P2pCircuit {
            return matches!(relay.iter().last(), Some(Protocol::P2p(_))).then_some(relay);
        }
        relay.push(p);
    }
    None
}

fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::QuicV1))
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    first_ip(addr).is_some_and(|ip| ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str = "12D3KooWLRPJAA5o6eg1aEFDVbUWgphJjUcmZtQgeTVCT5HZBkaX";

    fn a(s: &str) -> Multiaddr {
        s.replace("RELAY", RELAY).parse().unwrap()
    }

    #[test]
    fn best_first_and_no_loopback_when_there_is_more() {
        let listen = vec![
            a("/ip4/127.0.0.1/udp/1/quic-v1"),
            a("/ip4/192.168.1.2/tcp/2"),
            a("/ip4/192.168.1.2/udp/1/quic-v1"),
            a("/ip4/127.0.0.1/udp/4001/quic-v1/p2p/RELAY/p2p-circuit"),
            a("/ip4/203.0.113.1/tcp/4001/p2p/RELAY/p2p-circuit"),
            a("/ip4/203.0.113.1/udp/4001/quic-v1/p2p/RELAY/p2p-circuit"),
            a("/ip4/0.0.0.0/udp/1/quic-v1"),
        ];
        let confirmed = vec![a("/ip4/198.51.100.7/udp/1/quic-v1")];
        assert_eq!(
            shareable(&listen, &confirmed),
            vec![
                a("/ip4/198.51.100.7/udp/1/quic-v1"),
                a("/ip4/203.0.113.1/udp/4001/quic-v1/p2p/RELAY/p2p-circuit"),
                a("/ip4/203.0.113.1/tcp/4001/p2p/RELAY/p2p-circuit"),
            ]
        );
    }

    #[test]
    fn lan_addresses_only_on_a_lan() {
        let lan = vec![
            a("/ip4/192.168.1.2/tcp/2"),
            a("/ip4/192.168.1.2/udp/1/quic-v1"),
            a("/ip4/127.0.0.1/udp/1/quic-v1"),
        ];
        // A LAN with no way out: its addresses are what there is.
        assert_eq!(
            shareable(&lan, &[]),
            vec![
                a("/ip4/192.168.1.2/udp/1/quic-v1"),
                a("/ip4/192.168.1.2/tcp/2")
            ]
        );
        // A circuit through a public relay: the LAN addresses stay home, even one that a LAN
        // peer confirmed.
        let mut with_relay = lan.clone();
        with_relay.push(a("/ip4/203.0.113.1/udp/4001/quic-v1/p2p/RELAY/p2p-circuit"));
        assert_eq!(
            shareable(&with_relay, &[a("/ip4/192.168.1.2/udp/1/quic-v1")]),
            vec![a("/ip4/203.0.113.1/udp/4001/quic-v1/p2p/RELAY/p2p-circuit")]
        );
    }

    #[test]
    fn loopback_only_machines_keep_loopback() {
        let listen = vec![a("/ip4/127.0.0.1/tcp/2"), a("/ip4/127.0.0.1/udp/1/quic-v1")];
        assert_eq!(
            shareable(&listen, &[]),
            vec![a("/ip4/127.0.0.1/udp/1/quic-v1"), a("/ip4/127.0.0.1/tcp/2")]
        );
    }

    #[test]
    fn carrier_nat_and_link_local_are_private() {
        assert_eq!(
            reach_of(&a("/ip4/100.72.1.1/udp/1/quic-v1")),
            Reach::Private
        );
        assert_eq!(reach_of(&a("/ip6/fe80::1/udp/1/quic-v1")), Reach::Private);
        assert_eq!(
            reach_of(&a("/ip6/2001:db8::1/udp/1/quic-v1")),
            Reach::Public
        );
        assert_eq!(
            relay_part(&a(
                "/ip4/203.0.113.1/tcp/4001/p2p/RELAY/p2p-circuit/p2p/RELAY"
            )),
            Some(a("/ip4/203.0.113.1/tcp/4001/p2p/RELAY"))
        );
    }
}
