//! The hand-off of frames to the inference worker: newest-only (live) or every frame in order
//! (replay), counting what was dropped.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How frames wait for the inference worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueMode {
    /// Only the newest frame waits: a new frame replaces an unprocessed one (counted as a
    /// drop), so the worker never processes a stale frame.
    Live,
    /// Every frame waits, in order, up to `capacity`; beyond it the newest is refused and
    /// counted (deterministic replay: size the queue so this never happens).
    EveryFrame { capacity: usize },
}

/// What became of a pushed frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// Queued; an older, unprocessed frame was dropped to make room (live mode).
    ReplacedOlder,
    /// Not queued: the queue was full (every-frame mode).
    RefusedFull,
    /// Not queued: the queue is closed (shutting down).
    Closed,
}

/// Hand-off between the executor (never blocks: `push` only takes a short lock) and the one
/// inference worker thread (blocks in `pop`).
pub struct FrameQueue<T> {
    mode: QueueMode,
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> FrameQueue<T> {
    pub fn new(mode: QueueMode) -> Self {
        Self {
            mode,
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    pub fn mode(&self) -> QueueMode {
        self.mode
    }

    pub fn push(&self, item: T) -> Push {
        let mut state = self.state.lock().expect("frame queue lock poisoned");
        if state.closed {
            return Push::Closed;
        }
        let result = match self.mode {
            QueueMode::Live => {
                let replaced = state.items.pop_front().is_some();
                state.items.push_back(item);
                if replaced {
                    Push::ReplacedOlder
                } else {
                    Push::Queued
                }
            }
            QueueMode::EveryFrame { capacity } if state.items.len() >= capacity => {
                return Push::RefusedFull
            }
            QueueMode::EveryFrame { .. } => {
                state.items.push_back(item);
                Push::Queued
            }
        };
        drop(state);
        self.ready.notify_one();
        result
    }

    /// The next frame, waiting up to `timeout`. `None` on timeout or once closed and empty.
    pub fn pop(&self, timeout: Duration) -> Option<T> {
        let state = self.state.lock().expect("frame queue lock poisoned");
        let (mut state, _) = self
            .ready
            .wait_timeout_while(state, timeout, |s| s.items.is_empty() && !s.closed)
            .expect("frame queue lock poisoned");
        state.items.pop_front()
    }

    pub fn len(&self) -> usize {
        self.state
            .lock()
            .expect("frame queue lock poisoned")
            .items
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses new frames; the worker still drains what is queued.
    pub fn close(&self) {
        self.state.lock().expect("frame queue lock poisoned").closed = true;
        self.ready.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().expect("frame queue lock poisoned").closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const NO_WAIT: Duration = Duration::from_millis(0);

    #[test]
    fn live_mode_keeps_only_the_newest() {
        let q = FrameQueue::new(QueueMode::Live);
        assert_eq!(q.push(1), Push::Queued);
        assert_eq!(q.push(2), Push::ReplacedOlder);
        assert_eq!(q.push(3), Push::ReplacedOlder);
        assert_eq!(q.pop(NO_WAIT), Some(3));
        assert_eq!(q.pop(NO_WAIT), None);
    }

    #[test]
    fn every_frame_mode_keeps_order_and_refuses_beyond_capacity() {
        let q = FrameQueue::new(QueueMode::EveryFrame { capacity: 3 });
        for i in 0..3 {
            assert_eq!(q.push(i), Push::Queued);
        }
        assert_eq!(q.push(99), Push::RefusedFull);
        assert_eq!(
            (0..3).map(|_| q.pop(NO_WAIT).unwrap()).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn worker_wakes_on_push_and_drains_after_close() {
        let q = Arc::new(FrameQueue::new(QueueMode::EveryFrame { capacity: 8 }));
        let worker = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while !(q.is_closed() && q.is_empty()) {
                    if let Some(x) = q.pop(Duration::from_secs(5)) {
                        got.push(x);
                    }
                }
                got
            })
        };
        for i in 0..5 {
            q.push(i);
        }
        q.close();
        assert_eq!(q.push(7), Push::Closed);
        assert_eq!(worker.join().unwrap(), vec![0, 1, 2, 3, 4]);
    }
}
