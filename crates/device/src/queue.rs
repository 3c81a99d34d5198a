//! A bounded frame queue between two ordinary threads (not the audio callback): the producer
//! never blocks — when the queue is full the *oldest* frame is dropped — and the consumer
//! waits with a timeout. Frame buffers are recycled, so steady state does not allocate.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Vec<f32>>,
    free: Vec<Vec<f32>>,
    dropped: u64,
    closed: bool,
}

/// Bounded, drop-oldest queue of PCM frames.
#[derive(Debug)]
pub(crate) struct FrameQueue {
    inner: Mutex<Inner>,
    ready: Condvar,
    capacity: usize,
}

/// Result of waiting for a frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pop {
    /// A frame was copied out: this many samples of it (the rest of `out` is zeroed). The
    /// speaker's playout may push a shorter frame when it slips earlier.
    Frame(usize),
    /// Nothing arrived within the timeout.
    Timeout,
    /// The queue is closed and empty.
    Closed,
}

impl FrameQueue {
    pub(crate) fn new(capacity: usize) -> FrameQueue {
        FrameQueue {
            inner: Mutex::new(Inner::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves only plain data behind: keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a copy of `pcm`, dropping the oldest frame if full. Returns whether one was
    /// dropped.
    pub(crate) fn push(&self, pcm: &[f32]) -> bool {
        let mut inner = self.lock();
        let mut dropped = false;
        let mut buf = if inner.frames.len() >= self.capacity {
            inner.dropped += 1;
            dropped = true;
            inner.frames.pop_front().unwrap_or_default()
        } else {
            inner.free.pop().unwrap_or_default()
        };
        buf.clear();
        buf.extend_from_slice(pcm);
        inner.frames.push_back(buf);
        drop(inner);
        self.ready.notify_one();
        dropped
    }

    /// Copies the oldest frame into `out` (zero-padding or cutting to its length), waiting up
    /// to `timeout`.
    pub(crate) fn pop_into(&self, out: &mut [f32], timeout: Duration) -> Pop {
        let inner = self.lock();
        let (mut inner, _) = self
            .ready
            .wait_timeout_while(inner, timeout, |i| i.frames.is_empty() && !i.closed)
            .unwrap_or_else(|e| e.into_inner());
        match inner.frames.pop_front() {
            Some(buf) => {
                let n = buf.len().min(out.len());
                out[..n].copy_from_slice(&buf[..n]);
                out[n..].iter_mut().for_each(|s| *s = 0.0);
                if inner.free.len() < self.capacity {
                    inner.free.push(buf);
                }
                Pop::Frame(n)
            }
            None if inner.closed => Pop::Closed,
            None => Pop::Timeout,
        }
    }

    /// Frames dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Frames waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().frames.len()
    }

    /// Wakes every waiter; later pops return `Closed` once empty.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_oldest_when_full() {
        let q = FrameQueue::new(2);
        assert!(!q.push(&[1.0]));
        assert!(!q.push(&[2.0]));
        assert!(q.push(&[3.0]));
        assert_eq!(q.dropped(), 1);
        let mut out = [0.0; 2];
        assert_eq!(q.pop_into(&mut out, Duration::ZERO), Pop::Frame(1));
        assert_eq!(out, [2.0, 0.0]);
        assert_eq!(q.pop_into(&mut out, Duration::ZERO), Pop::Frame(1));
        assert_eq!(out, [3.0, 0.0]);
        assert_eq!(q.pop_into(&mut out, Duration::from_millis(1)), Pop::Timeout);
        q.close();
        assert_eq!(q.pop_into(&mut out, Duration::from_secs(10)), Pop::Closed);
    }

    #[test]
    fn a_waiting_consumer_is_woken() {
        let q = std::sync::Arc::new(FrameQueue::new(4));
        let q2 = q.clone();
        let t = std::thread::spawn(move || {
            let mut out = [0.0; 1];
            (q2.pop_into(&mut out, Duration::from_secs(10)), out[0])
        });
        std::thread::sleep(Duration::from_millis(20));
        q.push(&[7.0]);
        assert_eq!(t.join().unwrap(), (Pop::Frame(1), 7.0));
    }
}
