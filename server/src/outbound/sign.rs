//! The signature of every outbound call (webhooks, the before-send hook), so a
//! receiver knows the call came from this server and was not replayed:
//! `Mkondo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! While a secret is being rotated the header carries one `v1` per secret
//! (the new one first); a receiver accepts the call if any of them matches
//! the secret it knows, and refuses a `t` too far from its clock.

use ring::hmac;

/// The header's name.
pub const SIGNATURE_HEADER: &str = "Mkondo-Signature";

/// The header's value for `body`, sent at unix time `t`, with one `v1` per
/// secret, in the order given.
pub fn signature_header(secrets: &[&[u8]], t: i64, body: &[u8]) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex::encode(sign(secret, t, body).as_ref()));
    }
    header
}

fn sign(secret: &[u8], t: i64, body: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    ctx.sign()
}

/// Whether `header` signs `body` with `secret` (any of its `v1`s, compared in
/// constant time) at a time within `tolerance_s` of `now`, either side.
pub fn verify(header: &str, secret: &[u8], body: &[u8], now: i64, tolerance_s: i64) -> bool {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) if t.is_none() => match value.parse::<i64>() {
                Ok(value) => t = Some(value),
                Err(_) => return false,
            },
            Some(("t", _)) => return false,
            Some(("v1", value)) => signatures.push(value),
            // Other schemes a later version may add are not ours to judge.
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if now.abs_diff(t) > tolerance_s.max(0) as u64 {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut message = Vec::with_capacity(body.len() + 21);
    message.extend_from_slice(t.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    signatures.iter().any(|hex_sig| {
        hex::decode(hex_sig).is_ok_and(|sig| hmac::verify(&key, &message, &sig).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed independently:
    //   printf '%s' '1700000000.{"id":"ev_1"}' | openssl dgst -sha256 -hmac 'whsec_test'
    const VECTOR_BODY: &[u8] = br#"{"id":"ev_1"}"#;
    const VECTOR_SECRET: &[u8] = b"whsec_test";
    const VECTOR_T: i64 = 1_700_000_000;
    const VECTOR_HEX: &str = "0ef8441954c7c510c78f6c063ddfba5a6f746285701338504e3a77d1811f2fa6";

    #[test]
    fn the_signature_matches_an_independent_hmac() {
        assert_eq!(
            signature_header(&[VECTOR_SECRET], VECTOR_T, VECTOR_BODY),
            format!("t={VECTOR_T},v1={VECTOR_HEX}")
        );
    }

    #[test]
    fn a_rotation_signs_with_both_secrets_and_either_verifies() {
        let header = signature_header(&[b"new-secret", b"old-secret"], 100, b"{}");
        let parts: Vec<&str> = header.split(',').collect();
        assert_eq!(parts.len(), 3, "{header}");
        assert_eq!(parts[0], "t=100");
        assert_ne!(parts[1], parts[2]);
        assert!(verify(&header, b"new-secret", b"{}", 100, 300));
        assert!(verify(&header, b"old-secret", b"{}", 100, 300));
        assert!(!verify(&header, b"another", b"{}", 100, 300));
    }

    #[test]
    fn verify_refuses_a_changed_body_or_a_bad_header() {
        let header = signature_header(&[b"s"], 100, b"{\"a\":1}");
        assert!(verify(&header, b"s", b"{\"a\":1}", 100, 300));
        assert!(!verify(&header, b"s", b"{\"a\":2}", 100, 300));
        let other_t = header.replace("t=100", "t=101");
        assert!(!verify(&other_t, b"s", b"{\"a\":1}", 100, 300));
        for bad in ["", "t=100", "v1=00", "t=x,v1=00", "t=100,t=100,v1=00"] {
            assert!(!verify(bad, b"s", b"{\"a\":1}", 100, 300), "{bad}");
        }
    }

    #[test]
    fn verify_keeps_to_its_tolerance() {
        let header = signature_header(&[b"s"], 1_000, b"x");
        assert!(verify(&header, b"s", b"x", 1_300, 300), "at the edge");
        assert!(!verify(&header, b"s", b"x", 1_301, 300), "too old");
        assert!(verify(&header, b"s", b"x", 700, 300), "a clock behind");
        assert!(!verify(&header, b"s", b"x", 699, 300), "too far ahead");
    }
}
