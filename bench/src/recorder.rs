//! Send→receive latency and delivery counts, the same way for every server.
//!
//! A benchmark message's text starts with a marker, `bench:<sent>:<sender>;`,
//! where `<sent>` is nanoseconds since the run's clock started and `<sender>`
//! the sending connection. Receivers find markers in the raw bytes of what they
//! read (JSON text, protobuf bytes and socket.io packets all carry the text
//! verbatim), so no client pays for decoding a whole frame just to time it, and
//! the load generator leaves as much CPU as it can to the server under test.
//! A sender's own echo (both servers push a message to every member, the sender
//! included) is not counted: only other members' receipts are deliveries.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex, OnceLock,
};
use std::time::Instant;

use hdrhistogram::Histogram;

const MARKER: &[u8] = b"bench:";

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the run's clock started.
pub fn now_nanos() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// The text of a benchmark message sent now by connection `sender`, padded to
/// `size` bytes (the marker is never cut).
pub fn message_text(sender: usize, size: usize) -> String {
    let mut text = format!("bench:{}:{sender};", now_nanos());
    while text.len() < size {
        text.push('x');
    }
    text
}

/// Latencies in microseconds, from 1 µs to 60 s at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Shared by every connection of a run.
pub struct Recorder {
    deliveries: AtomicU64,
    /// When the latest delivery arrived ([`now_nanos`]): the end of a step's
    /// work, however long the drain after it waits.
    last_delivery: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            deliveries: AtomicU64::new(0),
            last_delivery: AtomicU64::new(0),
            latency: Mutex::new(new_histogram()),
        }
    }
}

impl Recorder {
    /// Counts and times every benchmark message in `bytes`, received by
    /// connection `me`.
    pub fn scan(&self, me: usize, bytes: &[u8]) {
        let now = now_nanos();
        let mut rest = bytes;
        let mut found = 0u64;
        let mut hist = None;
        while let Some(pos) = find(rest, MARKER) {
            rest = &rest[pos + MARKER.len()..];
            let (sent, after) = number(rest);
            let Some(after) = after.strip_prefix(b":") else {
                continue;
            };
            let (sender, _) = number(after);
            if sender == me as u64 {
                continue;
            }
            found += 1;
            let micros = now.saturating_sub(sent) / 1000;
            let h = hist.get_or_insert_with(|| self.latency.lock().expect("latency lock"));
            h.saturating_record(micros.max(1));
        }
        if found > 0 {
            self.deliveries.fetch_add(found, Ordering::Relaxed);
            self.last_delivery.fetch_max(now, Ordering::Relaxed);
        }
    }

    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    /// [`now_nanos`] of the latest delivery.
    pub fn last_delivery_nanos(&self) -> u64 {
        self.last_delivery.load(Ordering::Relaxed)
    }

    /// The latencies recorded since the last call, and a fresh start.
    pub fn take_latency(&self) -> Histogram<u64> {
        let mut h = self.latency.lock().expect("latency lock");
        std::mem::replace(&mut *h, new_histogram())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The decimal number at the start of `bytes`, and what follows it.
fn number(bytes: &[u8]) -> (u64, &[u8]) {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let value = bytes[..digits].iter().fold(0u64, |n, d| {
        n.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
    });
    (value, &bytes[digits..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_other_senders_markers_and_skips_own_echo() {
        let r = Recorder::default();
        let a = message_text(1, 40);
        let b = message_text(2, 10);
        let batch = format!("{{\"text\":\"{a}\"}}\n{{\"text\":\"{b}\"}}");
        r.scan(2, batch.as_bytes());
        assert_eq!(
            r.deliveries(),
            1,
            "the echo of connection 2 is not a delivery"
        );
        assert_eq!(r.take_latency().len(), 1);
        assert_eq!(r.take_latency().len(), 0, "taking resets");
        assert!(a.len() == 40 && a.starts_with("bench:"));
    }
}
