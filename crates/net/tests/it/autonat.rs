//! Reachability probes (AutoNAT v2) must not cost a client its uplink. A server asks for 30–100
//! KB of "dial data" before it dials an address on another IP than the client's connection
//! comes from (so nobody can aim its dials at a third party). libp2p compared whole addresses,
//! port included, so it asked it of a client whose connection came through a NAT or a UDP
//! forwarder from another port of its own IP: a listener behind a 36 kbit/s path spent its
//! uplink on those uploads, the ACKs of its audio waited behind them, and it never heard the room
//! (`ruang-node`'s `a_narrow_path_lowers_the_hosts_bitrate…`). The vendored server
//! (vendor/README.md) compares the IPs, as the AutoNAT v2 spec says.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use ruang_net::{Multiaddr, Transport, multiaddr::Protocol};
use ruang_testkit::impair::{LinkConfig, Relay, RelayConfig};

use crate::common::*;

/// The UDP socket of `addrs`' first QUIC address.
fn quic_socket(addrs: &[Multiaddr]) -> Option<SocketAddr> {
    addrs.iter().find_map(|a| {
        let mut it = a.iter();
        let ip = match it.next()? {
            Protocol::Ip4(ip) => std::net::IpAddr::V4(ip),
            _ => return None,
        };
        match (it.next()?, it.next()?) {
            (Protocol::Udp(port), Protocol::QuicV1) => Some(SocketAddr::new(ip, port)),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_from_another_port_of_the_same_ip_costs_no_dial_data() -> Result<()> {
    init_tracing();
    let server = node(config(Transport::QuicOnly)).await?;
    let client = node(config(Transport::QuicOnly)).await?;
    let target = quic_socket(&server.client.listen_addrs().await?).context("no QUIC address")?;
    // The client reaches the server only through a forwarder on another port (a NAT would
    // do the same): the server sees it come from 127.0.0.1:<forwarder's port>, while the
    // client's own address is 127.0.0.1:<its port>.
    let relay = Relay::start(RelayConfig::symmetric(
        "127.0.0.1:0".parse()?,
        target,
        LinkConfig::default(),
        1,
    ))?;
    let via = relay.local_addr();
    let addr: Multiaddr = format!(
        "/ip4/{}/udp/{}/quic-v1/p2p/{}",
        via.ip(),
        via.port(),
        server.id()
    )
    .parse()?;
    client.client.dial(addr).await?;
    // The client probes its candidates every 5 s.
    eventually(
        Duration::from_secs(30),
        "the server answered a probe",
        || async {
            server
                .client
                .autonat_served()
                .await
                .is_ok_and(|s| s.probes >= 1)
        },
    )
    .await?;
    let served = server.client.autonat_served().await?;
    let relay = relay.stop();
    assert_eq!(
        served.dial_data_bytes, 0,
        "{served:?}; through the forwarder: {relay}"
    );
    Ok(())
}
