//! What the three clients share about reading a provider's answer: a body
//! read up to a cap (a provider's error is a few hundred bytes; a misrouted
//! request must not make us buffer megabytes), `Retry-After` in both of its
//! forms (RFC 9110 section 10.2.3: seconds, or an HTTP date), and a reason
//! text safe to log. Also the small helpers every module needs: base64url
//! that takes padding or not, the clock, and randomness from ring.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{Error, Outcome, Result};

/// The most of an answer's body read; the rest is dropped.
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The longest reason text kept from an answer.
const MAX_REASON_CHARS: usize = 200;

/// A transport error without its URL: a Web Push endpoint is a capability
/// (whoever knows it can push), an APNs URL holds the device token, and
/// errors end up in logs.
fn transport(error: reqwest::Error) -> Error {
    Error::Transport(error.without_url())
}

/// A provider's reply: its status, its headers and at most
/// [`MAX_ANSWER_BYTES`] of its body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Sends a request and reads the reply.
pub(crate) async fn exchange(request: reqwest::RequestBuilder) -> Result<Reply> {
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status().as_u16();
    let headers = std::mem::take(response.headers_mut());
    let body = read_capped(response).await?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// What one request got, before a client's one resend with a new
/// credential: an outcome, or a refusal of the credentials.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    Done(Outcome),
    Unauthorized { status: u16, reason: String },
}

impl Verdict {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Verdict::Done(outcome) => outcome.label(),
            Verdict::Unauthorized { .. } => "unauthorized",
        }
    }

    pub(crate) fn into_result(self) -> Result<Outcome> {
        match self {
            Verdict::Done(outcome) => Ok(outcome),
            Verdict::Unauthorized { status, reason } => Err(Error::Unauthorized { status, reason }),
        }
    }
}

/// Reads up to [`MAX_ANSWER_BYTES`] of a response's body.
async fn read_capped(mut response: reqwest::Response) -> Result<Bytes> {
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        let room = MAX_ANSWER_BYTES - body.len();
        if chunk.len() >= room {
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The delay an answer's `Retry-After` asks for, if it has a readable one.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An HTTP date in any of the three forms RFC 9110 section 5.6.7 asks a
/// recipient to accept: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the
/// obsolete RFC 850 form (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
/// (`Sun Nov  6 08:49:37 1994`).
pub(crate) fn parse_http_date(text: &str) -> Option<SystemTime> {
    let cleaned = text.replace([',', '-'], " ");
    let parts: Vec<&str> = cleaned.split_whitespace().collect();
    let (day, month, year, time) = match parts.as_slice() {
        [_, day, month, year, time, "GMT"] => {
            let year: i64 = year.parse().ok()?;
            // RFC 850's two-digit year (RFC 9110: the nearest century that
            // is not more than 50 years ahead; this is near enough).
            let year = match (year, year < 100) {
                (y, true) if y < 70 => 2000 + y,
                (y, true) => 1900 + y,
                (y, false) => y,
            };
            (*day, *month, year, *time)
        }
        [_, month, day, time, year] => (*day, *month, year.parse().ok()?, *time),
        _ => return None,
    };
    let day: i64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)? as i64
        + 1;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A provider's error text made safe for a log line: printable, short.
pub(crate) fn reason_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_CHARS)
        .collect();
    if text.chars().count() > MAX_REASON_CHARS {
        out.push('…');
    }
    out.trim().to_owned()
}

/// Decodes base64url with or without padding (browsers' `toJSON()` and
/// other libraries differ).
pub(crate) fn decode_b64url(field: &'static str, text: &str) -> Result<Vec<u8>> {
    let text = text.trim();
    let decoded = if text.ends_with('=') {
        URL_SAFE.decode(text)
    } else {
        URL_SAFE_NO_PAD.decode(text)
    };
    decoded.map_err(|e| Error::invalid(field, format!("not base64url: {e}")))
}

pub(crate) fn encode_b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The DER inside a PEM block labelled `label` (RFC 7468), e.g. a `.p8`
/// key's `PRIVATE KEY`.
pub(crate) fn pem_to_der(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let base64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .ok()
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Bytes from the operating system's generator.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // ring's SystemRandom fails only where the OS has no generator at all;
    // nothing sensible can go on without one.
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random generator failed");
    bytes
}

/// A P-256 private key from the operating system's generator.
pub(crate) fn random_p256_key() -> p256::SecretKey {
    loop {
        // Almost every 32-byte string is a valid scalar; the loop covers
        // the 2^-32 chance that one is zero or not below the group order.
        if let Ok(key) = p256::SecretKey::from_slice(&random_bytes::<32>()) {
            return key;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn retry_after_reads_seconds_and_each_date_form() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_767); // 1994-11-06 08:49:27
        assert_eq!(
            retry_after(&headers("120"), now),
            Some(Duration::from_secs(120))
        );
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                retry_after(&headers(date), now),
                Some(Duration::from_secs(10)),
                "{date}"
            );
        }
        // A date already past means "now".
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        for bad in ["soon", "-5", "Sun, 36 Nov 1994 08:49:37 GMT", "1.5", ""] {
            assert_eq!(retry_after(&headers(bad), now), None, "{bad}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn http_dates_match_known_instants() {
        let at = parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT").unwrap();
        assert_eq!(at, UNIX_EPOCH);
        let at = parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT").unwrap();
        assert_eq!(unix_seconds(at), 1_835_438_400);
    }

    #[test]
    fn reasons_are_printable_and_short() {
        assert_eq!(reason_text(b"bad\r\ninput"), "bad  input");
        let long = "x".repeat(500);
        assert_eq!(reason_text(long.as_bytes()).chars().count(), 201);
    }

    #[test]
    fn pem_blocks_are_read_by_label() {
        let pem = "junk\n-----BEGIN PRIVATE KEY-----\nAQID\nBA==\n-----END PRIVATE KEY-----\n";
        assert_eq!(pem_to_der(pem, "PRIVATE KEY"), Some(vec![1, 2, 3, 4]));
        assert_eq!(pem_to_der(pem, "CERTIFICATE"), None);
        assert_eq!(
            pem_to_der(
                "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----",
                "PRIVATE KEY"
            ),
            None
        );
    }

    #[test]
    fn base64url_with_or_without_padding() {
        assert_eq!(decode_b64url("f", "AQI").unwrap(), vec![1, 2]);
        assert_eq!(decode_b64url("f", "AQI=").unwrap(), vec![1, 2]);
        assert!(decode_b64url("f", "A+/=").is_err());
    }
}
