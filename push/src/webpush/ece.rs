//! Message encryption for Web Push: RFC 8291 ("Message Encryption for Web
//! Push") over the `aes128gcm` content coding of RFC 8188 ("Encrypted
//! Content-Encoding for HTTP").
//!
//! One record, record size 4096, the last-record padding delimiter 0x02 and
//! no further padding, a fresh sender key pair and salt per message. The
//! body is `salt (16) || rs (4, big-endian) || idlen (1) = 65 || as_public
//! (65) || ciphertext`. The derivation, in RFC 8291 section 3.4's words:
//!
//! ```text
//! ecdh_secret = ECDH(as_private, ua_public)
//! IKM   = HKDF(salt = auth_secret, ikm = ecdh_secret,
//!              info = "WebPush: info" || 0x00 || ua_public || as_public, 32)
//! CEK   = HKDF(salt, IKM, "Content-Encoding: aes128gcm" || 0x00, 16)
//! NONCE = HKDF(salt, IKM, "Content-Encoding: nonce" || 0x00, 12)
//! ```
//!
//! ECDH is RustCrypto's `p256` (ring has only ephemeral keys, and the RFC's
//! test vector needs a given one); HKDF-SHA-256 and AES-128-GCM are ring's.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use ring::{aead, hkdf};

use crate::answer::{random_bytes, random_p256_key};
use crate::{Error, Result};

/// The record size written in the header: a whole message is one record.
pub const RECORD_SIZE: u32 = 4096;
/// The header: salt, record size, key id length, the sender's public key.
const HEADER_LEN: usize = 16 + 4 + 1 + 65;
/// AES-GCM's tag.
const TAG_LEN: usize = 16;
/// The largest plaintext: a push service need not take a body over 4096
/// octets (RFC 8030 section 7.2), less the header, the delimiter and the tag
/// (RFC 8291 section 4: 3993).
pub const MAX_PLAINTEXT: usize = 4096 - HEADER_LEN - 1 - TAG_LEN;

/// Encrypts `plaintext` for a subscription with a fresh sender key and salt.
pub(crate) fn encrypt(
    ua_public: &PublicKey,
    auth_secret: &[u8; 16],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let sender = random_p256_key();
    let salt = random_bytes::<16>();
    encrypt_with(ua_public, auth_secret, &sender, &salt, plaintext)
}

/// The encryption itself, with the sender key and the salt given (so RFC
/// 8291 section 5's example can be checked byte for byte).
pub(crate) fn encrypt_with(
    ua_public: &PublicKey,
    auth_secret: &[u8; 16],
    sender: &SecretKey,
    salt: &[u8; 16],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(Error::invalid(
            "payload",
            format!(
                "{} bytes, more than the {MAX_PLAINTEXT} one Web Push record holds",
                plaintext.len()
            ),
        ));
    }
    let ua_point = ua_public.to_encoded_point(false);
    let as_point = sender.public_key().to_encoded_point(false);
    let shared = p256::ecdh::diffie_hellman(sender.to_nonzero_scalar(), ua_public.as_affine());

    let ikm: [u8; 32] = hkdf_sha256(
        auth_secret,
        shared.raw_secret_bytes(),
        &[b"WebPush: info\0", ua_point.as_bytes(), as_point.as_bytes()],
    );
    let cek: [u8; 16] = hkdf_sha256(salt, &ikm, &[b"Content-Encoding: aes128gcm\0"]);
    let nonce: [u8; 12] = hkdf_sha256(salt, &ikm, &[b"Content-Encoding: nonce\0"]);

    let mut body = Vec::with_capacity(HEADER_LEN + plaintext.len() + 1 + TAG_LEN);
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(65);
    body.extend_from_slice(as_point.as_bytes());

    let mut record = Vec::with_capacity(plaintext.len() + 1 + TAG_LEN);
    record.extend_from_slice(plaintext);
    // The last (here the only) record's padding delimiter (RFC 8188 2).
    record.push(0x02);
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_128_GCM, &cek).expect("a 16-byte AES-128 key"),
    );
    // The nonce of record 0 is NONCE itself (XOR with the sequence number 0).
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::empty(),
        &mut record,
    )
    .expect("a record far below AES-GCM's limit");
    body.extend_from_slice(&record);
    Ok(body)
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA-256 (RFC 5869) with an output of `N` ≤ 32 bytes.
fn hkdf_sha256<const N: usize>(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> [u8; N] {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let mut out = [0u8; N];
    prk.expand(info, Len(N))
        .and_then(|okm| okm.fill(&mut out))
        .expect("an HKDF output of one block");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::{decode_b64url, encode_b64url};

    fn b64(text: &str) -> Vec<u8> {
        decode_b64url("test", text).unwrap()
    }

    /// RFC 8291 section 5 (inputs and result; the intermediate values are
    /// in its appendix A).
    #[test]
    fn rfc_8291_section_5_example_byte_for_byte() {
        let plaintext = b"When I grow up, I want to be a watermelon";
        let as_private = b64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw");
        let as_public = "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
        let ua_public =
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
        let salt: [u8; 16] = b64("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let auth: [u8; 16] = b64("BTBZMqHH6r4Tts7J_aSIgg").try_into().unwrap();
        let expected = concat!(
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml",
            "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT",
            "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
        );

        let sender = SecretKey::from_slice(&as_private).unwrap();
        assert_eq!(
            encode_b64url(sender.public_key().to_encoded_point(false).as_bytes()),
            as_public
        );
        let ua = PublicKey::from_sec1_bytes(&b64(ua_public)).unwrap();
        let body = encrypt_with(&ua, &auth, &sender, &salt, plaintext).unwrap();
        assert_eq!(encode_b64url(&body), expected);
        assert_eq!(body, b64(expected));
    }

    #[test]
    fn fresh_key_and_salt_per_message_and_a_size_limit() {
        let ua = random_p256_key().public_key();
        let auth = [7u8; 16];
        let a = encrypt(&ua, &auth, b"same").unwrap();
        let b = encrypt(&ua, &auth, b"same").unwrap();
        assert_ne!(a[..16], b[..16], "salt");
        assert_ne!(a[21..86], b[21..86], "sender key");
        assert_eq!(a.len(), HEADER_LEN + 4 + 1 + TAG_LEN);
        assert_eq!(&a[16..21], &[0, 0, 0x10, 0, 65]);

        let full = encrypt(&ua, &auth, &[0u8; MAX_PLAINTEXT]).unwrap();
        assert_eq!(full.len(), 4096);
        let err = encrypt(&ua, &auth, &[0u8; MAX_PLAINTEXT + 1]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Invalid {
                    field: "payload",
                    ..
                }
            ),
            "{err}"
        );
    }
}
