//! The terminal UI for a room: the stage with live talking indicators, raised hands, the
//! audience, chat, connection and audio health, and the keys to act on them.
//!
//! # Layout
//!
//! - [`app`]: [`App`], the state the screen shows, built from an initial `node.status()` and
//!   the node's events. Pure.
//! - [`keys`]: [`App::handle_key`] maps a key to an [`Action`]. Pure.
//! - [`draw`](mod@draw): [`draw()`] paints an [`App`] into a ratatui frame (with `bars`: the
//!   health line and key help, and `text`: wrapping and cleaning peers' text). Pure.
//! - here: [`join`], the screen with a join's progress, and [`run`], the loop that wires
//!   them to a terminal and a [`NodeHandle`].
//!
//! # Run loop
//!
//! [`run`] takes the terminal (raw mode, alternate screen), then `select!`s over key presses
//! (crossterm's `EventStream`), the node's events and the replies to actions in flight.
//! Actions run concurrently (at most [`MAX_ACTIONS_IN_FLIGHT`], each under a timeout), so a
//! slow reply never freezes the screen. The screen is redrawn after each of these. The
//! terminal is restored on every way out: return, error, and panic (a guard's `Drop` and a
//! panic hook). Nothing is printed to stdout or stderr while the UI is up.

pub mod app;
mod bars;
pub mod draw;
pub mod keys;
mod text;

use std::io::{self, Stdout};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::{Event, EventStream};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute, terminal};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ruang_node::{Delivery, NodeEvent, NodeHandle};
use ruang_proto::room::EventBody;
use tokio::sync::broadcast::error::RecvError;

pub use app::App;
pub use draw::{Joining, draw};
pub use keys::{Action, Handover};

/// Actions waiting for the node's reply at once; further keys are refused until one returns.
pub const MAX_ACTIONS_IN_FLIGHT: usize = 16;
/// How long an action, a status query or leaving may take before the UI gives up on it.
const NODE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How the terminal UI ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The user left (q or Ctrl-C); the node has been asked to leave the room.
    Left,
    /// The room ended.
    Ended,
    /// The node was removed from the room (kicked or banned).
    Removed(ruang_node::event::LeaveReason),
}

/// Runs the terminal UI for the room the node is in until the user leaves (q / Ctrl-C) or the
/// room ends / the node is kicked or banned. Restores the terminal on every exit path (also on
/// panic).
///
/// On [`Exit::Left`] it has called `node.leave()`; on the others the node has left (or is
/// leaving) by itself. It does not shut the node down.
///
/// `screen` is the terminal already in the UI's mode (from [`join`]), if any.
pub async fn run(
    node: NodeHandle,
    no_input: Option<String>,
    screen: Option<Screen>,
) -> anyhow::Result<Exit> {
    // Subscribe before the snapshot, so nothing between the two is missed.
    let mut events = node.subscribe();
    let status = tokio::time::timeout(NODE_CALL_TIMEOUT, node.status())
        .await
        .context("the node did not answer")??;
    if status.room.is_none() {
        anyhow::bail!("not in a room: host or join one first");
    }
    let mut app = App::from_status(&node.key(), &status);
    if let Some(why) = no_input {
        app.set_status(
            format!("no microphone ({why}): you can listen, not speak"),
            true,
        );
        app.no_input = Some(why);
    }
    let mut screen = match screen {
        Some(screen) => screen,
        None => Screen::enter().context("cannot set up the terminal")?,
    };
    let exit = event_loop(&node, &mut app, &mut events, &mut screen.terminal).await;
    drop(screen);
    exit
}

/// Joins `target` with the terminal in the UI's mode, showing the join's progress on a screen
/// of its own until the node is in the room; returns the terminal for [`run`]. Esc, `q` or
/// Ctrl-C (and SIGTERM) cancel: [`crate::signal::Interrupted`]. On any failure the terminal is
/// restored first and the progress lines are printed on stderr, above the error.
pub async fn join(
    node: &NodeHandle,
    target: ruang_node::JoinTarget,
) -> anyhow::Result<(Screen, ruang_node::Joined)> {
    let mut joining = Joining {
        target: match &target {
            ruang_node::JoinTarget::Ticket(t) => format!("room {}", short_id(&t.room.to_hex())),
            ruang_node::JoinTarget::Room(id) => format!("room {}", short_id(&id.to_hex())),
        },
        ..Joining::default()
    };
    let mut progress = node.subscribe();
    let mut screen = Screen::enter().context("cannot set up the terminal")?;
    let result = joining_loop(node, target, &mut joining, &mut progress, &mut screen).await;
    match result {
        Ok(joined) => Ok((screen, joined)),
        Err(e) => {
            drop(screen);
            for line in &joining.lines {
                eprintln!("{line}");
            }
            Err(e)
        }
    }
}

/// `ab12cd…9f` for a long hex id.
fn short_id(hex: &str) -> String {
    match hex.len() {
        0..=16 => hex.to_string(),
        n => format!("{}…{}", &hex[..8], &hex[n - 4..]),
    }
}

async fn joining_loop(
    node: &NodeHandle,
    target: ruang_node::JoinTarget,
    joining: &mut Joining,
    progress: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    screen: &mut Screen,
) -> anyhow::Result<ruang_node::Joined> {
    let mut keys = EventStream::new();
    let join = node.join(target);
    tokio::pin!(join);
    let signal = crate::signal::wait_for_signal();
    tokio::pin!(signal);
    loop {
        screen
            .terminal
            .draw(|frame| draw::draw_joining(frame, joining))
            .context("cannot draw")?;
        tokio::select! {
            // Progress first: a line still queued when the answer comes is shown too.
            biased;
            ev = progress.recv() => match ev {
                Ok(NodeEvent::Progress { message }) => joining.push(message),
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Ok(join.await?),
            },
            key = keys.next() => match key {
                Some(Ok(Event::Key(key))) if keys::cancels_join(key) => {
                    return Err(crate::signal::Interrupted.into());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("cannot read the keyboard"),
                None => anyhow::bail!("the keyboard input closed"),
            },
            _ = &mut signal => return Err(crate::signal::Interrupted.into()),
            joined = &mut join => {
                while let Ok(ev) = progress.try_recv() {
                    if let NodeEvent::Progress { message } = ev {
                        joining.push(message);
                    }
                }
                return Ok(joined?);
            }
        }
    }
}

/// What an action in flight resolves to: the action, its description, and the outcome.
type Outcome = (Action, String, Result<Option<Delivery>, String>);

async fn event_loop(
    node: &NodeHandle,
    app: &mut App,
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
) -> anyhow::Result<Exit> {
    let mut keys = EventStream::new();
    let mut in_flight: FuturesUnordered<BoxFuture<'static, Outcome>> = FuturesUnordered::new();
    loop {
        terminal
            .draw(|frame| draw(frame, app))
            .context("cannot draw")?;
        tokio::select! {
            key = keys.next() => match key {
                Some(Ok(Event::Key(key))) => {
                    let Some(action) = app.handle_key(key) else { continue };
                    if let Action::Leave(handover) = &action {
                        app.leaving = true;
                        hand_over(node, handover).await;
                        leave(node).await;
                        return Ok(Exit::Left);
                    }
                    if let Action::Copy(text) = &action {
                        // Written now, with the frame: the terminal takes it as it draws.
                        let copied = execute!(
                            terminal.backend_mut(),
                            crossterm::clipboard::CopyToClipboard::to_clipboard_from(text)
                        );
                        match copied {
                            Ok(()) => app.set_status(
                                "ticket sent to the terminal's clipboard (paste it to check: \
                                 some terminals do not allow this)",
                                false,
                            ),
                            Err(e) => app.set_status(format!("could not copy: {e}"), true),
                        }
                        continue;
                    }
                    if in_flight.len() >= MAX_ACTIONS_IN_FLIGHT {
                        app.set_status("busy: waiting for the node to answer earlier keys", true);
                        continue;
                    }
                    let what = app.describe(&action);
                    in_flight.push(perform(node.clone(), action, what));
                }
                Some(Ok(_)) => {} // resize, focus, mouse: the redraw handles them
                Some(Err(e)) => return Err(e).context("cannot read the keyboard"),
                None => anyhow::bail!("the keyboard input closed"),
            },
            event = events.recv() => match event {
                Ok(NodeEvent::Lagged { missed }) => {
                    app.apply(NodeEvent::Lagged { missed });
                    refresh(node, app).await;
                }
                Ok(event) => {
                    if let Some(exit) = app.apply(event) {
                        return Ok(exit);
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    app.apply(NodeEvent::Lagged { missed });
                    refresh(node, app).await;
                }
                Err(RecvError::Closed) => {
                    return Ok(Exit::Removed(ruang_node::event::LeaveReason::Shutdown));
                }
            },
            Some((action, what, result)) = in_flight.next(), if !in_flight.is_empty() => {
                app.on_result(&action, &what, result);
            }
        }
    }
}

/// Runs one action against the node, under [`NODE_CALL_TIMEOUT`].
fn perform(node: NodeHandle, action: Action, what: String) -> BoxFuture<'static, Outcome> {
    async move {
        let call = async {
            match &action {
                Action::Act(body) => node.act(body.clone()).await.map(Some),
                Action::Chat(text) => node.chat(text.clone()).await.map(Some),
                Action::SelfMute(on) => node.self_mute(*on).await.map(|()| None),
                Action::Leave(handover) => {
                    hand_over(&node, handover).await;
                    node.leave().await.map(|()| None)
                }
                // Done by the run loop itself, never sent here.
                Action::Copy(_) => Ok(None),
            }
        };
        let result = match tokio::time::timeout(NODE_CALL_TIMEOUT, call).await {
            Ok(Ok(delivery)) => Ok(delivery),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the node did not answer in time".to_string()),
        };
        (action, what, result)
    }
    .boxed()
}

/// What a leaving host does to the room first: a hand-off or the end. A failure (the heir
/// left, the node is gone) only goes to the log file: the user is leaving either way.
async fn hand_over(node: &NodeHandle, handover: &Handover) {
    let body = match handover {
        Handover::Nothing => return,
        Handover::To(to) => EventBody::HandOff { to: *to },
        Handover::End => EventBody::EndRoom,
    };
    match tokio::time::timeout(NODE_CALL_TIMEOUT, node.act(body)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("handing the room over before leaving: {e}"),
        Err(_) => tracing::warn!("the node did not confirm the hand-over in time"),
    }
}

/// Leaves the room; a failure (already out, node gone) only goes to the log file.
async fn leave(node: &NodeHandle) {
    match tokio::time::timeout(NODE_CALL_TIMEOUT, node.leave()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("leaving the room: {e}"),
        Err(_) => tracing::warn!("the node did not confirm leaving in time"),
    }
}

/// Re-reads the room from the node after missing events.
async fn refresh(node: &NodeHandle, app: &mut App) {
    if let Ok(Ok(status)) = tokio::time::timeout(NODE_CALL_TIMEOUT, node.status()).await {
        app.self_muted = status.self_muted;
        app.health.peers = status.peers;
        if let Some(ticket) = status.ticket {
            app.ticket = Some(ticket.to_string());
        }
        if let Some(room) = status.room {
            app.set_room(room);
        }
    }
}

/// Whether the terminal is in the UI's mode now (raw, alternate screen), for the panic hook.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();

/// The terminal in the UI's mode; restored when dropped.
pub struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> io::Result<Screen> {
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // Restore first, so the panic message lands on a normal screen.
                restore();
                previous(info);
            }));
        });
        ACTIVE.store(true, Ordering::SeqCst);
        let setup = terminal::enable_raw_mode()
            .and_then(|()| execute!(io::stdout(), EnterAlternateScreen))
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
        match setup {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves raw mode and the alternate screen, once, if the UI has the terminal.
fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        // Best effort: there is nowhere to report a failure to restore the terminal.
        let _ = terminal::disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
    }
}

#[cfg(test)]
mod tests;
