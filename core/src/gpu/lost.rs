//! Device loss as an event: the reason is kept for the next check
//! ([`Gpu::check_errors`](super::Gpu::check_errors)) and wakes whoever awaits
//! [`LostSignal::wait`], so a page can tell its user at once instead of at the next call.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct State {
    reason: Option<String>,
    waiters: Vec<Waker>,
}

/// Shared between the device's lost callback and those who wait for it. Cloning shares it.
#[derive(Clone, Default)]
pub struct LostSignal(Arc<Mutex<State>>);

impl LostSignal {
    /// Records the reason (the first one wins) and wakes every waiter.
    pub(crate) fn set(&self, reason: String) {
        let waiters = match self.0.lock() {
            Ok(mut s) => {
                s.reason.get_or_insert(reason);
                std::mem::take(&mut s.waiters)
            }
            Err(_) => return,
        };
        waiters.into_iter().for_each(Waker::wake);
    }

    /// The reason, once the device is lost.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().ok().and_then(|s| s.reason.clone())
    }

    /// Resolves with the reason when the device is lost (at once if it already is). It
    /// holds the signal only, not the device, so waiting never keeps a device alive.
    pub fn wait(&self) -> impl Future<Output = String> + 'static {
        Lost(self.clone())
    }
}

struct Lost(LostSignal);

impl Future for Lost {
    type Output = String;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<String> {
        let Ok(mut s) = (self.0).0.lock() else {
            return Poll::Ready("the device-lost state was poisoned".into());
        };
        match &s.reason {
            Some(r) => Poll::Ready(r.clone()),
            None => {
                s.waiters.push(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_get_the_first_reason_and_later_waiters_get_it_at_once() {
        let signal = LostSignal::default();
        let waiting = signal.wait();
        assert_eq!(signal.reason(), None);
        signal.set("Destroyed: gone".into());
        signal.set("Unknown: later".into());
        assert_eq!(pollster::block_on(waiting), "Destroyed: gone");
        assert_eq!(pollster::block_on(signal.wait()), "Destroyed: gone");
    }
}
