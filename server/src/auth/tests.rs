//! The token rules, case by case: signatures, algorithms, claims, lifetimes, keys.

use super::*;
use serde_json::json;

const RSA_PRIVATE: &str = include_str!("../../tests/fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("../../tests/fixtures/ec_private.pem");
const EC_PUBLIC: &str = include_str!("../../tests/fixtures/ec_public.pem");
const ED_PRIVATE: &str = include_str!("../../tests/fixtures/ed25519_private.pem");
const ED_PUBLIC: &str = include_str!("../../tests/fixtures/ed25519_public.pem");

const NOW: i64 = 1_700_000_000;
const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

fn policy() -> TokenPolicy {
    TokenPolicy::default()
}

fn key(alg: KeyAlg, material: &str) -> SigningKey {
    SigningKey {
        kid: "k_test".into(),
        app_id: "app1".into(),
        alg,
        material: material.into(),
    }
}

fn hs_key() -> SigningKey {
    key(KeyAlg::Hs256, SECRET)
}

fn claims() -> Value {
    json!({ "sub": "alice", "app": "app1", "iat": NOW, "exp": NOW + 3600 })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Signs arbitrary claims with jsonwebtoken, header `{alg, kid: "k_test"}`.
fn sign(alg: Algorithm, enc: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some("k_test".into());
    jsonwebtoken::encode(&header, claims, enc).unwrap()
}

fn sign_hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

/// A token with a hand-made header, HMAC-signed with SECRET.
fn sign_raw_header(header: &Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let enc = EncodingKey::from_secret(SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &enc, Algorithm::HS256).unwrap();
    format!("{message}.{sig}")
}

fn check(token: &str) -> Result<TokenClaims, TokenError> {
    verify(token, &hs_key(), &policy(), NOW)
}

#[test]
fn valid_hs256() {
    let got = check(&sign_hs(&claims())).unwrap();
    assert_eq!(
        got,
        TokenClaims {
            app_id: "app1".into(),
            user_id: "alice".into(),
            exp: NOW + 3600,
            iat: Some(NOW),
            nbf: None,
            name: None,
            avatar: None,
            groups: vec![],
        }
    );
}

#[test]
fn valid_asymmetric_tokens() {
    let cases = [
        (
            KeyAlg::Rs256,
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
            RSA_PUBLIC,
        ),
        (
            KeyAlg::Es256,
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
            EC_PUBLIC,
        ),
        (
            KeyAlg::EdDsa,
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
            ED_PUBLIC,
        ),
    ];
    for (alg, jwt_alg, enc, public) in cases {
        let k = key(alg, public);
        assert!(key_usable(&k), "{alg}");
        let full = with(
            with(claims(), "name", json!("Alice")),
            "avatar",
            json!("https://example.invalid/a.png"),
        );
        let token = sign(jwt_alg, &enc, &full);
        assert_eq!(peek_header(&token).unwrap().alg, alg.as_str());
        let got = verify(&token, &k, &policy(), NOW).unwrap();
        assert_eq!(got.user_id, "alice");
        assert_eq!(got.name.as_deref(), Some("Alice"));
        assert_eq!(got.avatar.as_deref(), Some("https://example.invalid/a.png"));

        // Tampered payload: same header and signature, other user.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(&with(claims(), "sub", json!("mallory"))),
            parts[2]
        );
        assert_eq!(
            verify(&forged, &k, &policy(), NOW),
            Err(TokenError::BadSignature),
            "{alg}"
        );
    }
}

#[test]
fn foreign_and_tampered_signatures() {
    // The Ed25519 token checked against an EC key: type mismatch at key level.
    let enc = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::EdDSA, &enc, &claims());
    assert_eq!(
        verify(&token, &key(KeyAlg::Es256, EC_PUBLIC), &policy(), NOW),
        Err(TokenError::AlgMismatch)
    );
    // A well-formed ES256 token whose signature bytes were altered.
    let other = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::ES256, &other, &claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut sig = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
    sig[10] ^= 0x55;
    parts[2] = URL_SAFE_NO_PAD.encode(sig);
    assert_eq!(
        verify(
            &parts.join("."),
            &key(KeyAlg::Es256, EC_PUBLIC),
            &policy(),
            NOW
        ),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn bad_signature_wrong_secret() {
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret"),
        &claims(),
    );
    assert_eq!(check(&token), Err(TokenError::BadSignature));
    // Signature stripped.
    let stripped = token.rsplit_once('.').unwrap().0.to_owned() + ".";
    assert_eq!(check(&stripped), Err(TokenError::BadSignature));
}

#[test]
fn alg_none_rejected() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = format!(
            "{}.{}.",
            b64(&json!({ "alg": alg, "kid": "k_test" })),
            b64(&claims())
        );
        assert_eq!(peek_header(&token), Err(TokenError::AlgNone), "{alg}");
        assert_eq!(check(&token), Err(TokenError::AlgNone), "{alg}");
    }
}

#[test]
fn alg_key_confusion_rejected() {
    // HS256 token against an RS256 key.
    let token = sign_hs(&claims());
    assert_eq!(
        verify(&token, &key(KeyAlg::Rs256, RSA_PUBLIC), &policy(), NOW),
        Err(TokenError::AlgMismatch)
    );
    // The classic confusion: HMAC-signed with the public PEM as the secret.
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        &claims(),
    );
    assert_eq!(
        verify(&forged, &key(KeyAlg::Rs256, RSA_PUBLIC), &policy(), NOW),
        Err(TokenError::AlgMismatch)
    );
    // RS256 token against an HS256 key.
    let enc = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::RS256, &enc, &claims());
    assert_eq!(check(&token), Err(TokenError::AlgMismatch));
    // Algorithms we do not support at all.
    for alg in ["HS512", "RS512", "hs256", "PS256", "whatever"] {
        let token = sign_raw_header(&json!({ "alg": alg, "kid": "k_test" }), &claims());
        assert_eq!(check(&token), Err(TokenError::AlgMismatch), "{alg}");
    }
}

#[test]
fn missing_kid() {
    let no_kid = sign_raw_header(&json!({ "alg": "HS256", "typ": "JWT" }), &claims());
    assert_eq!(peek_header(&no_kid), Err(TokenError::MissingKid));
    assert_eq!(check(&no_kid), Err(TokenError::MissingKid));
    for kid in [json!(""), json!(7), json!(null)] {
        let token = sign_raw_header(&json!({ "alg": "HS256", "kid": kid }), &claims());
        assert_eq!(peek_header(&token), Err(TokenError::MissingKid));
    }
    let token = sign_hs(&claims());
    assert_eq!(
        peek_header(&token),
        Ok(TokenHeader {
            kid: "k_test".into(),
            alg: "HS256".into()
        })
    );
    // A key that is not the one the header names.
    let mut other = hs_key();
    other.kid = "k_other".into();
    assert_eq!(
        verify(&token, &other, &policy(), NOW),
        Err(TokenError::UnknownKid)
    );
}

#[test]
fn expiry_and_leeway() {
    let at = |exp: i64| check(&sign_hs(&with(claims(), "exp", json!(exp))));
    assert!(at(NOW - 10).is_ok(), "within leeway");
    assert!(at(NOW - 29).is_ok(), "within leeway");
    assert_eq!(at(NOW - 30), Err(TokenError::Expired));
    assert_eq!(at(NOW - 31), Err(TokenError::Expired));
    assert_eq!(at(NOW - 3600), Err(TokenError::Expired));
    assert_eq!(at(i64::MIN), Err(TokenError::Expired));
    assert_eq!(TokenError::Expired.code(), ErrorCode::TokenExpired);
    assert_eq!(TokenError::BadSignature.code(), ErrorCode::InvalidToken);
    // Fractional NumericDate is accepted.
    assert_eq!(at(0), Err(TokenError::Expired));
    let frac = check(&sign_hs(&with(claims(), "exp", json!(NOW as f64 + 60.5)))).unwrap();
    assert_eq!(frac.exp, NOW + 60);
}

#[test]
fn not_yet_valid() {
    let nbf = |nbf: i64| check(&sign_hs(&with(claims(), "nbf", json!(nbf))));
    assert_eq!(nbf(NOW + 31), Err(TokenError::NotYetValid));
    assert_eq!(nbf(NOW + 600), Err(TokenError::NotYetValid));
    assert_eq!(nbf(NOW + 30).unwrap().nbf, Some(NOW + 30));
    assert!(nbf(NOW - 100).is_ok());
    // An iat in the future beyond leeway is as suspicious as an nbf.
    let iat = check(&sign_hs(&with(claims(), "iat", json!(NOW + 600))));
    assert_eq!(iat, Err(TokenError::NotYetValid));
}

#[test]
fn missing_and_invalid_sub() {
    assert_eq!(
        check(&sign_hs(&without(claims(), "sub"))),
        Err(TokenError::MissingSub)
    );
    assert_eq!(
        check(&sign_hs(&with(claims(), "sub", json!(null)))),
        Err(TokenError::MissingSub)
    );
    let long = "a".repeat(129);
    for bad in [
        json!("al ice"),
        json!(""),
        json!(long),
        json!("alice/bob"),
        json!("émile"),
        json!(42),
    ] {
        assert_eq!(
            check(&sign_hs(&with(claims(), "sub", bad.clone()))),
            Err(TokenError::InvalidSub),
            "{bad}"
        );
    }
    let ok = "a".repeat(128);
    assert_eq!(
        check(&sign_hs(&with(claims(), "sub", json!(ok))))
            .unwrap()
            .user_id,
        ok
    );
}

#[test]
fn missing_and_wrong_app() {
    assert_eq!(
        check(&sign_hs(&without(claims(), "app"))),
        Err(TokenError::MissingApp)
    );
    assert_eq!(
        check(&sign_hs(&with(claims(), "app", json!("app2")))),
        Err(TokenError::WrongApp)
    );
    assert_eq!(
        check(&sign_hs(&with(claims(), "app", json!(["app1"])))),
        Err(TokenError::WrongApp)
    );
}

#[test]
fn missing_exp() {
    assert_eq!(
        check(&sign_hs(&without(claims(), "exp"))),
        Err(TokenError::MissingExp)
    );
    assert_eq!(
        check(&sign_hs(&with(claims(), "exp", json!("tomorrow")))),
        Err(TokenError::Malformed)
    );
}

#[test]
fn lifetime() {
    let max = policy().max_lifetime_secs;
    let at = |c: Value| check(&sign_hs(&c));
    assert!(at(with(claims(), "exp", json!(NOW + max + 30))).is_ok());
    assert_eq!(
        at(with(claims(), "exp", json!(NOW + max + 31))),
        Err(TokenError::LifetimeTooLong)
    );
    // Without iat the lifetime counts from now.
    let no_iat = without(claims(), "iat");
    assert!(at(with(no_iat.clone(), "exp", json!(NOW + max))).is_ok());
    assert_eq!(
        at(with(no_iat, "exp", json!(NOW + 10 * max))),
        Err(TokenError::LifetimeTooLong)
    );
    // An old iat: the token's whole lifetime counts.
    let old = with(claims(), "iat", json!(NOW - max));
    assert_eq!(
        at(with(old, "exp", json!(NOW + 3600))),
        Err(TokenError::LifetimeTooLong)
    );
    // A future iat (within leeway) does not stretch the allowance.
    let future = with(claims(), "iat", json!(NOW + 30));
    assert_eq!(
        at(with(future, "exp", json!(NOW + max + 45))),
        Err(TokenError::LifetimeTooLong)
    );
    // Extreme values saturate instead of overflowing.
    assert_eq!(
        at(with(claims(), "exp", json!(u64::MAX))),
        Err(TokenError::LifetimeTooLong)
    );
    assert_eq!(
        at(with(claims(), "iat", json!(i64::MIN))),
        Err(TokenError::LifetimeTooLong)
    );
    let strict = TokenPolicy {
        max_lifetime_secs: 60,
        leeway_secs: 0,
    };
    let token = sign_hs(&claims());
    assert_eq!(
        verify(&token, &hs_key(), &strict, NOW),
        Err(TokenError::LifetimeTooLong)
    );
}

#[test]
fn claim_types() {
    let got = check(&sign_hs(&with(claims(), "groups", json!(["g1", "g2"])))).unwrap();
    assert_eq!(got.groups, vec!["g1".to_owned(), "g2".to_owned()]);
    for (name, bad) in [
        ("groups", json!("g1")),
        ("groups", json!([1])),
        ("name", json!(5)),
        ("avatar", json!({})),
        ("nbf", json!("x")),
        ("iat", json!(true)),
    ] {
        assert_eq!(
            check(&sign_hs(&with(claims(), name, bad))),
            Err(TokenError::Malformed),
            "{name}"
        );
    }
    // Unknown claims are ignored, including an audience.
    assert!(check(&sign_hs(&with(claims(), "aud", json!("someone")))).is_ok());
    // Non-object payloads.
    for payload in [json!([1, 2]), json!("x"), json!(null)] {
        assert_eq!(check(&sign_hs(&payload)), Err(TokenError::Malformed));
    }
    // Critical header extensions are refused.
    let crit = sign_raw_header(
        &json!({ "alg": "HS256", "kid": "k_test", "crit": ["exp"] }),
        &claims(),
    );
    assert_eq!(check(&crit), Err(TokenError::Malformed));
}

#[test]
fn garbage_inputs() {
    let valid = sign_hs(&claims());
    let parts: Vec<&str> = valid.split('.').collect();
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    let huge_dots = format!("{}.{}.{}", parts[0], "A".repeat(MAX_TOKEN_LEN), parts[2]);
    let garbage = [
        String::new(),
        ".".into(),
        "..".into(),
        "...".into(),
        "a".into(),
        "a.b".into(),
        "a.b.c".into(),
        "a.b.c.d.e".into(),
        "!!!.???.***".into(),
        format!("{valid}.x"),
        format!("{}.{}", parts[0], parts[1]),
        format!("{}..{}", parts[0], parts[2]),
        format!(".{}.{}", parts[1], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", b64(&json!("str")), parts[1], parts[2]),
        format!("{}.{}.{}", b64(&json!([])), parts[1], parts[2]),
        format!("{}.{}.{}", b64(&json!({ "kid": "k" })), parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode([0xff, 0xfe]),
            parts[1],
            parts[2]
        ),
        format!("{}.%%%.{}", parts[0], parts[2]),
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(b"not json"),
            parts[2]
        ),
        huge,
        huge_dots,
        "\u{0}\u{0}.\u{0}.\u{0}".into(),
        "ü.ß.€".into(),
    ];
    for token in &garbage {
        let shown: String = token.chars().take(40).collect();
        assert!(check(token).is_err(), "{shown}");
        for alg in KeyAlg::ALL {
            let material = match alg {
                KeyAlg::Hs256 => SECRET,
                KeyAlg::Rs256 => RSA_PUBLIC,
                KeyAlg::Es256 => EC_PUBLIC,
                KeyAlg::EdDsa => ED_PUBLIC,
            };
            assert!(verify(token, &key(alg, material), &policy(), NOW).is_err());
        }
    }
    assert_eq!(peek_header(""), Err(TokenError::Malformed));
    assert_eq!(peek_header("a.b.c.d.e"), Err(TokenError::Malformed));
    assert_eq!(check("a.b"), Err(TokenError::Malformed));
    // The signature is checked before the payload is read.
    assert_eq!(
        check(&format!("{}.%%%.{}", parts[0], parts[2])),
        Err(TokenError::BadSignature)
    );
    // A correctly signed payload that is not base64url JSON.
    let message = format!("{}.%%%", parts[0]);
    let enc = EncodingKey::from_secret(SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &enc, Algorithm::HS256).unwrap();
    assert_eq!(
        check(&format!("{message}.{sig}")),
        Err(TokenError::Malformed)
    );
}

#[test]
fn unusable_keys() {
    let token = sign_hs(&claims());
    assert_eq!(
        verify(&token, &key(KeyAlg::Hs256, ""), &policy(), NOW),
        Err(TokenError::KeyUnusable)
    );
    for (alg, material) in [
        (KeyAlg::Rs256, "not a pem"),
        (KeyAlg::Rs256, EC_PUBLIC),
        (KeyAlg::Es256, RSA_PUBLIC),
        (
            KeyAlg::Es256,
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ),
        (KeyAlg::EdDsa, EC_PUBLIC),
        (KeyAlg::EdDsa, ""),
    ] {
        let k = key(alg, material);
        assert!(!key_usable(&k), "{alg}");
        let header = json!({ "alg": alg.as_str(), "kid": "k_test" });
        let token = format!("{}.{}.AAAA", b64(&header), b64(&claims()));
        assert_eq!(
            verify(&token, &k, &policy(), NOW),
            Err(TokenError::KeyUnusable),
            "{alg}"
        );
    }
    assert!(key_usable(&hs_key()));
    assert!(!format!("{:?}", hs_key()).contains(SECRET));
}

#[test]
fn mint_round_trip() {
    let groups = vec!["general".to_owned(), "random".to_owned()];
    let token = mint_hs256(&hs_key(), "alice", 600, &groups, Some("Alice"), NOW).unwrap();
    assert_eq!(peek_header(&token).unwrap().kid, "k_test");
    let got = check(&token).unwrap();
    assert_eq!(
        got,
        TokenClaims {
            app_id: "app1".into(),
            user_id: "alice".into(),
            exp: NOW + 600,
            iat: Some(NOW),
            nbf: None,
            name: Some("Alice".into()),
            avatar: None,
            groups,
        }
    );
    // Groups omitted when empty, name when None.
    let token = mint_hs256(&hs_key(), "bob", 60, &[], None, NOW).unwrap();
    let payload = URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    let payload: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        payload,
        json!({ "sub": "bob", "app": "app1", "iat": NOW, "exp": NOW + 60 })
    );
    // Expires like any other token.
    assert_eq!(
        verify(&token, &hs_key(), &policy(), NOW + 90),
        Err(TokenError::Expired)
    );
    // A minted token with a too-long ttl is refused by verify.
    let long = mint_hs256(&hs_key(), "bob", 2 * 86_400, &[], None, NOW).unwrap();
    assert_eq!(check(&long), Err(TokenError::LifetimeTooLong));

    assert_eq!(
        mint_hs256(&key(KeyAlg::Rs256, RSA_PUBLIC), "a", 60, &[], None, NOW),
        Err(TokenError::KeyUnusable)
    );
    assert_eq!(
        mint_hs256(&key(KeyAlg::Hs256, ""), "a", 60, &[], None, NOW),
        Err(TokenError::KeyUnusable)
    );
    assert_eq!(
        mint_hs256(&hs_key(), "a b", 60, &[], None, NOW),
        Err(TokenError::InvalidSub)
    );
    assert_eq!(
        mint_hs256(&hs_key(), "a", 0, &[], None, NOW),
        Err(TokenError::Expired)
    );
}

#[test]
fn user_ids() {
    for ok in ["a", "alice", "A.b_c@d:e-f", "0", "z".repeat(128).as_str()] {
        assert!(valid_user_id(ok), "{ok}");
    }
    for bad in [
        "",
        "a b",
        "a/b",
        "a\n",
        "é",
        "a+b",
        "a#",
        "z".repeat(129).as_str(),
    ] {
        assert!(!valid_user_id(bad), "{bad}");
    }
}

#[test]
fn generated_identifiers() {
    let kid = new_kid();
    assert_eq!(kid.len(), 18);
    assert!(kid.starts_with("k_"));
    assert!(kid[2..]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_ne!(new_kid(), kid);

    let secret = new_hs256_secret();
    assert_eq!(URL_SAFE_NO_PAD.decode(&secret).unwrap().len(), 32);
    assert_ne!(new_hs256_secret(), secret);
    // A generated secret works end to end.
    let k = key(KeyAlg::Hs256, &secret);
    let token = mint_hs256(&k, "alice", 60, &[], None, NOW).unwrap();
    assert!(verify(&token, &k, &policy(), NOW).is_ok());
}

#[test]
fn api_keys() {
    let k = new_api_key("app1");
    assert!(k.plaintext.starts_with("mk_app1_"));
    assert_eq!(k.plaintext.len(), "mk_app1_".len() + 32);
    assert_eq!(k.hash, hash_api_key(&k.plaintext));
    assert_eq!(k.hash.len(), 64);
    assert!(k.plaintext.starts_with(&k.prefix));
    assert_eq!(k.prefix.len(), "mk_app1_".len() + 8);
    assert!(!format!("{k:?}").contains(&k.plaintext));
    assert_eq!(api_key_app(&k.plaintext), Some("app1"));
    assert!(looks_like_api_key(&k.plaintext));

    let other = new_api_key("app1");
    assert_ne!(other.plaintext, k.plaintext);
    assert_ne!(other.prefix, k.prefix);
    assert_ne!(other.hash, k.hash);

    // Known vector: sha256("abc").
    assert_eq!(
        hash_api_key("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );

    // App ids with underscores still parse (the random part never has one).
    let odd = new_api_key("my_app");
    assert_eq!(api_key_app(&odd.plaintext), Some("my_app"));

    for bad in [
        "",
        "mk_",
        "mk_app1",
        "mk__0123456789abcdef0123456789abcdef",
        "mk_app1_short",
        "mk_app1_0123456789abcdef0123456789abcde!",
        "xk_app1_0123456789abcdef0123456789abcdef",
        "eyJhbGciOiJIUzI1NiJ9.e30.sig",
    ] {
        assert_eq!(api_key_app(bad), None, "{bad}");
    }
    assert!(!looks_like_api_key(&sign_hs(&claims())));
    assert!(!looks_like_api_key(""));
}

#[test]
fn names_and_reasons() {
    for alg in KeyAlg::ALL {
        assert_eq!(KeyAlg::parse(alg.as_str()), Some(alg));
    }
    assert_eq!(KeyAlg::parse("EdDSA"), Some(KeyAlg::EdDsa));
    assert_eq!(KeyAlg::parse("hs256"), None);
    assert_eq!(KeyAlg::parse("none"), None);
    let all = [
        TokenError::Malformed,
        TokenError::AlgNone,
        TokenError::MissingKid,
        TokenError::UnknownKid,
        TokenError::AlgMismatch,
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::MissingSub,
        TokenError::InvalidSub,
        TokenError::MissingApp,
        TokenError::WrongApp,
        TokenError::MissingExp,
        TokenError::LifetimeTooLong,
        TokenError::KeyUnusable,
    ];
    let reasons: HashSet<_> = all.iter().map(TokenError::reason).collect();
    assert_eq!(reasons.len(), all.len());
    assert!(!reasons.contains(&Reason::None) && !reasons.contains(&Reason::Other));
    assert_eq!(TokenError::AlgNone.reason().as_str(), "alg_none");
    assert_eq!(
        TokenError::LifetimeTooLong.reason().as_str(),
        "lifetime_too_long"
    );
}

#[test]
fn a_configured_lifetime_is_clamped() {
    // A policy configured past the ceiling (or below 1 s) counts as the ceiling
    // (or 1 s): a token cannot live a year, or for ever, whatever the setting.
    let unbounded = TokenPolicy {
        max_lifetime_secs: i64::MAX,
        leeway_secs: i64::MAX,
    };
    for exp in [NOW + 365 * 86_400, i64::MAX] {
        let token = sign_hs(&with(claims(), "exp", json!(exp)));
        assert_eq!(
            verify(&token, &hs_key(), &unbounded, NOW),
            Err(TokenError::LifetimeTooLong),
            "exp {exp}"
        );
    }
    let ceiling = NOW + MAX_TOKEN_LIFETIME_SECS;
    let token = sign_hs(&with(claims(), "exp", json!(ceiling)));
    assert!(verify(&token, &hs_key(), &unbounded, NOW).is_ok());
    // An expired token stays expired: the leeway is clamped too.
    let old = sign_hs(&with(claims(), "exp", json!(NOW - 3600)));
    assert_eq!(
        verify(&old, &hs_key(), &unbounded, NOW),
        Err(TokenError::Expired)
    );
    let zero = TokenPolicy {
        max_lifetime_secs: i64::MIN,
        leeway_secs: i64::MIN,
    };
    let token = sign_hs(&with(claims(), "exp", json!(NOW + 2)));
    assert_eq!(
        verify(&token, &hs_key(), &zero, NOW),
        Err(TokenError::LifetimeTooLong)
    );
}

#[test]
fn a_token_without_iat_lives_at_most_the_maximum_from_now() {
    let max = policy().max_lifetime_secs;
    let no_iat = without(claims(), "iat");
    let token = sign_hs(&with(no_iat.clone(), "exp", json!(NOW + max)));
    assert!(check(&token).is_ok());
    let token = sign_hs(&with(no_iat, "exp", json!(NOW + max + 31)));
    assert_eq!(check(&token), Err(TokenError::LifetimeTooLong));
}

#[test]
fn claimed_times_in_milliseconds_saturate() {
    let mut c = check(&sign_hs(&claims())).unwrap();
    assert_eq!(c.expires_at_ms(), (NOW + 3600) * 1000);
    assert_eq!(c.issued_at_ms(), NOW * 1000);
    c.exp = i64::MAX;
    c.iat = Some(i64::MIN);
    assert_eq!(c.expires_at_ms(), i64::MAX);
    assert_eq!(c.issued_at_ms(), i64::MIN);
    c.exp = i64::MIN;
    c.iat = Some(i64::MAX);
    assert_eq!(c.expires_at_ms(), i64::MIN);
    assert_eq!(c.issued_at_ms(), i64::MAX);
    // No iat: issued at the epoch (before any revocation point).
    c.iat = None;
    assert_eq!(c.issued_at_ms(), 0);
}

#[test]
fn a_new_hs256_secret_has_at_least_32_bytes() {
    let short = key(KeyAlg::Hs256, &"s".repeat(MIN_HS256_SECRET_BYTES - 1));
    assert!(!key_usable(&short));
    let long = key(KeyAlg::Hs256, &"s".repeat(MIN_HS256_SECRET_BYTES));
    assert!(key_usable(&long));
    assert!(new_hs256_secret().len() >= MIN_HS256_SECRET_BYTES);
    // An existing shorter key still verifies what it signed (it is refused
    // only when added): rotating it is the operator's call.
    let old = key(KeyAlg::Hs256, "short-old-secret");
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"short-old-secret"),
        &claims(),
    );
    assert!(verify(&token, &old, &policy(), NOW).is_ok());
}
