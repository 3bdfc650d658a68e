//! Which of a session's wake-ups need more than its push queue looked at.
//!
//! A session is woken once per push it is sent, and nearly every wake-up is
//! only that: a push in its queue. The other things it waits on — the
//! client's frames, the close and shutdown signals, the timer — change rarely,
//! but polling them costs on every turn (a socket read attempt through the
//! WebSocket's lock, a mutex in each cancellation signal). So they are polled
//! with a waker of their own, which raises a flag before it wakes the task:
//! a turn polls them only when the flag is up.
//!
//! Invariant: every future polled with [`Control::waker`] stays registered
//! with it until it is polled again, and a turn that polls them either polls
//! all of them or raises the flag again (`raise`), so that no wake-up of one
//! is consumed by another's turn. Anything that polls one of them with another
//! waker (the task's) must `raise` afterwards, since its next wake-up will not
//! raise the flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use futures::task::AtomicWaker;

pub(super) struct Control {
    shared: Arc<Shared>,
    waker: Waker,
}

struct Shared {
    raised: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.raised.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Control {
    /// Raised: the first turn polls everything.
    pub(super) fn new() -> Self {
        let shared = Arc::new(Shared {
            raised: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(shared.clone());
        Self { shared, waker }
    }

    /// Registers the task (`cx`) to be woken and lowers the flag; true if it
    /// was up, i.e. something polled with [`Control::waker`] may be ready.
    pub(super) fn take(&self, cx: &Context<'_>) -> bool {
        // Register before lowering: a wake-up in between raises the flag
        // again and wakes the task, so the next turn sees it.
        self.shared.task.register(cx.waker());
        self.shared.raised.swap(false, Ordering::AcqRel)
    }

    /// Makes the next turn poll everything.
    pub(super) fn raise(&self) {
        self.shared.raised.store(true, Ordering::Release);
    }

    /// The waker to poll the rarely ready futures with.
    pub(super) fn waker(&self) -> &Waker {
        &self.waker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;

    #[test]
    fn a_wake_through_the_control_waker_raises_the_flag_once() {
        let task = noop_waker();
        let cx = Context::from_waker(&task);
        let control = Control::new();
        assert!(control.take(&cx), "raised at first");
        assert!(!control.take(&cx));
        control.waker().wake_by_ref();
        assert!(control.take(&cx));
        assert!(!control.take(&cx));
        control.raise();
        assert!(control.take(&cx));
    }

    #[test]
    fn the_task_is_woken_when_the_flag_is_raised() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(Default::default()));
        let task = Waker::from(count.clone());
        let control = Control::new();
        control.take(&Context::from_waker(&task));
        control.waker().wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }
}
