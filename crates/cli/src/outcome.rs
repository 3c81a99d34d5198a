//! How a stay in a room ended, and the exit code it gives: one mapping for every front-end
//! (plain output, JSON mode, the terminal UI).

use std::process::ExitCode;

use ruang_node::event::LeaveReason;

/// How a stay in a room ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The user left (or stdin closed).
    Left,
    /// The host ended the room.
    Ended,
    /// A moderator removed this node (kicked or banned).
    Removed(LeaveReason),
}

impl Outcome {
    /// How a stay ends when the node left its room for `reason`: every front-end (plain
    /// output, JSON mode, the terminal UI) takes its exit from here.
    pub fn of(reason: LeaveReason) -> Outcome {
        match reason {
            LeaveReason::Left | LeaveReason::Shutdown => Outcome::Left,
            LeaveReason::Ended => Outcome::Ended,
            LeaveReason::Kicked | LeaveReason::Banned => Outcome::Removed(reason),
        }
    }

    /// The exit code and the message the user sees.
    pub fn finish(&self) -> ExitCode {
        match self {
            Outcome::Left => ExitCode::SUCCESS,
            Outcome::Ended => {
                eprintln!("The room has ended.");
                ExitCode::SUCCESS
            }
            Outcome::Removed(reason) => {
                eprintln!("error: you were removed from the room ({reason})");
                ExitCode::from(3)
            }
        }
    }
}
