//! Waiting for the user to stop the program (Ctrl-C, or SIGTERM from a service manager).
//!
//! The first call to [`wait_for_signal`] starts listening, and the listening stays: a signal
//! that arrives while no wait is being polled (between two turns of a `select!` loop, say) is
//! kept, and every wait from then on returns at once. A program that never waits keeps the
//! default action (Ctrl-C ends it).

use std::future::Future;
use std::sync::OnceLock;

use tokio::sync::watch;

/// Whether a stop signal has arrived; `None` when listening could not start.
static STOPPED: OnceLock<Option<watch::Receiver<bool>>> = OnceLock::new();

/// Waits for Ctrl-C or SIGTERM. Listening starts when this is called (not when it is first
/// polled), so a signal sent after the call is never lost. Must be called inside the runtime.
pub fn wait_for_signal() -> impl Future<Output = ()> + Send + 'static {
    let stopped = STOPPED.get_or_init(listen).clone();
    async move {
        match stopped {
            Some(mut stopped) => {
                if stopped.wait_for(|s| *s).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Installs the handlers and a task that records the first signal for good.
fn listen() -> Option<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).ok()?;
        let mut terminate = signal(SignalKind::terminate()).ok()?;
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            let _ = tx.send(true);
            // The sender stays, so that waits never see a closed channel.
            std::future::pending::<()>().await;
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = tx.send(true);
        std::future::pending::<()>().await;
    });
    Some(rx)
}

/// The user interrupted (Ctrl-C, SIGTERM) before the node was in the room: exit 130.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted while joining the room")
    }
}

impl std::error::Error for Interrupted {}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A signal that arrives while no wait is polled (the user's Ctrl-C landing while a
    /// `select!` loop prints a line) is seen by the next wait. It was lost: every wait made its
    /// own listener, and a fresh listener sees only later signals.
    #[tokio::test]
    async fn a_signal_between_two_waits_is_not_lost() {
        drop(wait_for_signal());
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        tokio::time::timeout(std::time::Duration::from_secs(20), wait_for_signal())
            .await
            .expect("the signal sent between two waits was lost");
        // And it stays: a later wait returns at once too.
        tokio::time::timeout(std::time::Duration::from_secs(20), wait_for_signal())
            .await
            .expect("a second wait after the signal");
    }
}
