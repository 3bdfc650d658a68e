//! What a provider said about one push, the same four answers for all three
//! providers, so the caller's queue has one policy.

use std::time::Duration;

/// A provider's verdict on one push.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The provider took the push. `id` is its id where it gives one: the
    /// `apns-id`, FCM's message `name`, a Web Push service's `Location`.
    Accepted { id: Option<String> },
    /// The device credential is dead (APNs 410 or `BadDeviceToken`, FCM
    /// `UNREGISTERED`, Web Push 404/410): remove the device.
    Gone { reason: String },
    /// The provider is overloaded or failing (429, 5xx): try again, not
    /// before `after` when the provider said (`Retry-After`).
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The provider refused this push for good (a malformed payload, a
    /// payload too large): sending it again cannot help.
    Rejected { status: u16, reason: String },
}

impl Outcome {
    /// A short name for logs and metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Accepted { .. } => "accepted",
            Outcome::Gone { .. } => "gone",
            Outcome::Retry { .. } => "retry",
            Outcome::Rejected { .. } => "rejected",
        }
    }
}
