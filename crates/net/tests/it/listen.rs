//! Listening: bound addresses are reported (ports resolved, `/p2p` helper), a port in use is a
//! clear `ListenFailed`, and an address the transport cannot serve is refused.

use crate::common::*;
use ruang_net::{Event, NetError, Transport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_and_listen_errors() -> anyhow::Result<()> {
    init_tracing();
    let mut a = node(config(Transport::QuicAndTcp)).await?;
    let addrs = a.client.listen_addrs().await?;
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    assert!(
        addrs
            .iter()
            .all(|x| !x.to_string().contains("/0/") && !x.to_string().ends_with("/0"))
    );
    let p2p = a.client.p2p_addrs().await?;
    assert!(
        p2p.iter()
            .all(|x| x.to_string().ends_with(&a.id().to_string()))
    );
    let listening = wait_for(&mut a.events, SOON, |e| match e {
        Event::Listening { addr } => Some(addr),
        _ => None,
    })
    .await?;
    assert!(addrs.contains(&listening));

    // Same TCP port again: "address in use".
    let tcp = addrs
        .iter()
        .find(|x| x.to_string().contains("/tcp/"))
        .unwrap()
        .clone();
    let mut c = config(Transport::TcpOnly);
    c.listen = vec![tcp.clone()];
    let err = ruang_net::spawn(c).await.expect_err("port in use");
    match &err {
        NetError::ListenFailed { addr, reason } => {
            assert_eq!(addr, &tcp);
            assert!(reason.contains("in use"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    println!("{err}");

    // Same UDP port for QUIC: in use too.
    let quic = addrs
        .iter()
        .find(|x| x.to_string().contains("quic-v1"))
        .unwrap()
        .clone();
    let mut c = config(Transport::QuicOnly);
    c.listen = vec![quic.clone()];
    let err = ruang_net::spawn(c).await.expect_err("UDP port in use");
    let in_use = matches!(
        &err,
        NetError::ListenFailed { addr, reason } if addr == &quic && reason.contains("in use")
    );
    assert!(in_use, "{err:?}");
    println!("{err}");

    // A QUIC address on a TCP-only node.
    let mut c = config(Transport::TcpOnly);
    c.listen = vec![quic_local()];
    let err = ruang_net::spawn(c).await.expect_err("unsupported address");
    assert!(matches!(err, NetError::ListenFailed { .. }), "{err:?}");
    println!("{err}");

    a.client.shutdown().await;
    // After shutdown every call fails fast with Shutdown.
    assert!(matches!(
        a.client.listen_addrs().await,
        Err(NetError::Shutdown)
    ));
    Ok(())
}
