//! `/ruang/sync/1`: request/response round trips (small and 1 MiB), and failures that come
//! back as errors within the timeout rather than hang.

use std::time::{Duration, Instant};

use crate::common::*;
use ruang_net::{Event, NetError, PeerId, Transport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_and_failures() -> anyhow::Result<()> {
    init_tracing();
    let a = node(config(Transport::QuicAndTcp)).await?;
    let b = node(config(Transport::QuicAndTcp)).await?;
    connect(&b.client, &a.client).await?;
    let Node {
        client: a_client,
        events: mut a_events,
        ..
    } = a;

    // A answers: reversed bytes; a request "big" gets 1 MiB; "silent" gets no answer. It
    // lists what it was asked.
    let server = a_client.clone();
    let responder = tokio::spawn(async move {
        let mut served: Vec<Vec<u8>> = Vec::new();
        while let Some(event) = a_events.recv().await {
            if let Event::SyncRequest {
                peer,
                request,
                reply,
            } = event
            {
                assert_eq!(reply.peer(), peer);
                served.push(request.clone());
                match &request[..] {
                    b"big" => server.respond(reply, vec![7u8; 1 << 20]).await.unwrap(),
                    b"silent" => drop(reply),
                    _ => {
                        let mut r = request.clone();
                        r.reverse();
                        server.respond(reply, r).await.unwrap();
                    }
                }
            }
        }
        served
    });

    let got = b
        .client
        .sync_request(a_client.local_peer_id(), b"abc".to_vec())
        .await?;
    assert_eq!(got, b"cba");
    let big = b
        .client
        .sync_request(a_client.local_peer_id(), b"big".to_vec())
        .await?;
    assert_eq!(big.len(), 1 << 20);
    assert!(big.iter().all(|&x| x == 7));

    // Dropped reply: an error, well before the request timeout.
    let started = Instant::now();
    let silent = b
        .client
        .sync_request(a_client.local_peer_id(), b"silent".to_vec())
        .await;
    assert!(silent.is_err(), "{silent:?}");
    assert!(started.elapsed() < Duration::from_secs(11));

    // Over the request bound: refused locally.
    let too_big = b
        .client
        .sync_request(a_client.local_peer_id(), vec![0; 65 * 1024])
        .await;
    assert!(
        matches!(too_big, Err(NetError::TooLarge { .. })),
        "{too_big:?}"
    );

    // A peer we have no address for: fails fast.
    let started = Instant::now();
    let unknown = b.client.sync_request(PeerId::random(), b"x".to_vec()).await;
    assert!(
        matches!(unknown, Err(NetError::NotConnected { .. })),
        "{unknown:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    b.client.shutdown().await;
    a_client.shutdown().await;
    let mut served = tokio::time::timeout(SOON, responder).await??;
    // Each request reached A, at most twice: a request whose connection closed before its
    // answer (the two nodes' first connections are replaced by better ones) is sent once more.
    served.sort();
    let mut asked = served.clone();
    asked.dedup();
    assert_eq!(
        asked,
        [b"abc".to_vec(), b"big".to_vec(), b"silent".to_vec()]
    );
    assert!(served.len() <= 6, "{} requests served", served.len());
    Ok(())
}
