use super::*;

const TTL: Duration = Duration::from_secs(30);

/// RFC 2617 §3.5, the request line `GET /dir/index.html`.
fn rfc2617_header() -> &'static str {
    r#"Digest username="Mufasa",
             realm="testrealm@host.com",
             nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
             uri="/dir/index.html",
             qop=auth,
             nc=00000001,
             cnonce="0a4f113b",
             response="6629fae49393a05397450978507c4ef1",
             opaque="5ccc069c403ebaf9f0171e9517f40e41""#
}

/// RFC 7616 §3.9.1, the SHA-256 response.
fn rfc7616_header() -> &'static str {
    r#"Digest username="Mufasa",
   realm="http-auth@example.org",
   uri="/dir/index.html",
   algorithm=SHA-256,
   nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
   nc=00000001,
   cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
   qop=auth,
   response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
   opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
}

/// A header as pjsip sends it, with the response computed for `password`.
fn pjsip_header(nonce: &str, nc: u32, password: &str) -> String {
    let ha1 = Algorithm::Md5.hash_hex(&["alice", "acd", password]);
    let ha2 = Algorithm::Md5.hash_hex(&["REGISTER", "sip:127.0.0.1:5070"]);
    let nc = format!("{nc:08x}");
    let response = Algorithm::Md5.hash_hex(&[&ha1, nonce, &nc, "xyz", "auth", &ha2]);
    format!(
        "Digest username=\"alice\", realm=\"acd\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1:5070\", \
         response=\"{response}\", algorithm=MD5, cnonce=\"xyz\", qop=auth, nc={nc}"
    )
}

fn pjsip(nonce: &str, nc: u32, password: &str) -> DigestResponse {
    parse_authorization(&pjsip_header(nonce, nc, password)).unwrap()
}

#[test]
fn rfc2617_md5_example() {
    let r = parse_authorization(rfc2617_header()).unwrap();
    assert_eq!(r.username, "Mufasa");
    assert_eq!(r.realm, "testrealm@host.com");
    assert_eq!(r.algorithm, Algorithm::Md5);
    assert_eq!(r.nc, Some(1));
    assert_eq!(r.qop.as_deref(), Some("auth"));
    assert_eq!(r.opaque.as_deref(), Some("5ccc069c403ebaf9f0171e9517f40e41"));
    assert_eq!(expected_response(&r, "GET", "Circle Of Life"), "6629fae49393a05397450978507c4ef1");

    let mut store = NonceStore::new(TTL, 1);
    store.insert_for_test(&r.nonce, Time::ZERO);
    let now = Time::from_secs(1);
    assert_eq!(
        verify(&mut store, now, "GET", &r, "testrealm@host.com", "Circle of life"),
        Err(AuthFailure::BadResponse)
    );
    // The wrong guess spent the nonce: the right password on it is too late.
    assert_eq!(verify(&mut store, now, "GET", &r, "testrealm@host.com", "Circle Of Life"), Err(AuthFailure::Replay));
    store.insert_for_test(&r.nonce, Time::ZERO);
    assert_eq!(verify(&mut store, now, "GET", &r, "testrealm@host.com", "Circle Of Life"), Ok(()));
}

#[test]
fn rfc7616_sha256_example() {
    let r = parse_authorization(rfc7616_header()).unwrap();
    assert_eq!(r.algorithm, Algorithm::Sha256);
    assert_eq!(r.cnonce.as_deref(), Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"));
    assert_eq!(
        expected_response(&r, "GET", "Circle of Life"),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
    let mut store = NonceStore::new(TTL, 1);
    store.insert_for_test(&r.nonce, Time::ZERO);
    assert_eq!(verify(&mut store, Time::ZERO, "GET", &r, "http-auth@example.org", "Circle of Life"), Ok(()));
}

#[test]
fn parses_pjsip_header() {
    let r = parse_authorization(
        "Digest username=\"alice\", realm=\"acd\", nonce=\"abc\", uri=\"sip:127.0.0.1:5070\", \
         response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5, cnonce=\"xyz\", qop=auth, nc=00000001",
    )
    .unwrap();
    assert_eq!(
        r,
        DigestResponse {
            username: "alice".into(),
            realm: "acd".into(),
            nonce: "abc".into(),
            uri: "sip:127.0.0.1:5070".into(),
            response: "0123456789abcdef0123456789abcdef".into(),
            algorithm: Algorithm::Md5,
            cnonce: Some("xyz".into()),
            nc: Some(1),
            qop: Some("auth".into()),
            opaque: None,
        }
    );
}

#[test]
fn parse_edge_cases() {
    // Case-insensitive scheme and names, commas and escapes inside quotes,
    // quoted qop, bare values, unknown params, odd spacing.
    let r = parse_authorization(
        "digest USERNAME = \"a,b \\\"c\\\"\" ,Realm=acd,nonce=n1,URI=\"sip:x\",response=\"ab\",\
         qop=\"auth\",nc=0000000a,cnonce=\"c\",userhash=false,algorithm=sha-256",
    )
    .unwrap();
    assert_eq!(r.username, "a,b \"c\"");
    assert_eq!(r.realm, "acd");
    assert_eq!(r.nc, Some(10));
    assert_eq!(r.algorithm, Algorithm::Sha256);

    let base = r#"username="u", realm="r", nonce="n", uri="sip:x", response="ab""#;
    let no_alg = parse_authorization(&format!("Digest {base}")).unwrap();
    assert_eq!(no_alg.algorithm, Algorithm::Md5);
    assert_eq!(no_alg.qop, None);

    let err = |s: &str| parse_authorization(s).unwrap_err();
    assert_eq!(err(&format!("Basic {base}")), DigestError::NotDigest);
    assert_eq!(
        err(&format!("Digest {base}, algorithm=MD5-sess")),
        DigestError::UnsupportedAlgorithm("MD5-sess".into())
    );
    assert_eq!(
        err(&format!("Digest {base}, algorithm=AKAv1-MD5")),
        DigestError::UnsupportedAlgorithm("AKAv1-MD5".into())
    );
    assert_eq!(
        err(&format!("Digest {base}, qop=auth-int, nc=1, cnonce=c")),
        DigestError::UnsupportedQop("auth-int".into())
    );
    assert_eq!(err(&format!("Digest {base}, qop=auth, nc=1")), DigestError::MissingParam("cnonce"));
    assert_eq!(err(&format!("Digest {base}, qop=auth, cnonce=c")), DigestError::MissingParam("nc"));
    assert_eq!(err(&format!("Digest {base}, nc=xyz")), DigestError::BadNonceCount("xyz".into()));
    assert_eq!(err(&format!("Digest {base}, nc=123456789")), DigestError::BadNonceCount("123456789".into()));
    assert_eq!(err(&format!("Digest {base}, Realm=\"x\"")), DigestError::DuplicateParam("realm".into()));
    assert_eq!(err(r#"Digest realm="r", nonce="n", uri="u", response="x""#), DigestError::MissingParam("username"));
    assert!(matches!(err(&format!("Digest {base}, opaque=\"unterminated")), DigestError::Syntax { .. }));
    assert!(matches!(err(&format!("Digest {base} nc=1")), DigestError::Syntax { .. }));
    assert!(matches!(err(&format!("Digest {base}, =x")), DigestError::Syntax { .. }));
    assert!(matches!(err(&format!("Digest {base}, nc=")), DigestError::Syntax { .. }));
}

#[test]
fn challenge_header_format() {
    assert_eq!(
        challenge_header("acd", "abc", Algorithm::Md5, false),
        r#"Digest realm="acd", nonce="abc", algorithm=MD5, qop="auth""#
    );
    assert_eq!(
        challenge_header("a\"b", "abc", Algorithm::Sha256, true),
        r#"Digest realm="a\"b", nonce="abc", algorithm=SHA-256, qop="auth", stale=true"#
    );
}

#[test]
fn one_challenge_first_accepted_algorithm_unless_the_phone_already_answered_in_another() {
    use Algorithm::{Md5, Sha256};
    let sha = |nonce: &str| {
        format!(
            "Digest username=\"anna\", realm=\"acd\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", \
             response=\"ab\", algorithm=SHA-256, cnonce=\"c\", qop=auth, nc=00000001"
        )
    };
    let md5 = pjsip_header("n", 1, "secret");
    // No credentials yet: the first accepted algorithm (the default list is MD5, SHA-256).
    assert_eq!(challenge_algorithm(&[Md5, Sha256], None), Md5);
    assert_eq!(challenge_algorithm(&[Sha256, Md5], None), Sha256);
    assert_eq!(challenge_algorithm(&[Sha256], None), Sha256);
    // A stale nonce answered in an accepted algorithm: challenged in the same one.
    assert_eq!(challenge_algorithm(&[Md5, Sha256], Some(&sha("n"))), Sha256);
    assert_eq!(challenge_algorithm(&[Sha256, Md5], Some(&md5)), Md5);
    // Answered in an algorithm not accepted, or unparsable: back to the first.
    assert_eq!(challenge_algorithm(&[Sha256], Some(&md5)), Sha256);
    assert_eq!(challenge_algorithm(&[Md5], Some(&sha("n"))), Md5);
    assert_eq!(challenge_algorithm(&[Sha256], Some("Basic YWxhZGRpbjpvcGVuc2VzYW1l")), Sha256);
    assert_eq!(challenge_algorithm(&[Md5], Some("Digest algorithm=MD5-sess")), Md5);
    // Never empty in a validated config; MD5 if it were.
    assert_eq!(challenge_algorithm(&[], None), Md5);
}

#[test]
fn only_accepted_algorithms_authenticate() {
    use Algorithm::{Md5, Sha256};
    assert!(accepts(&[Md5, Sha256], Md5) && accepts(&[Md5, Sha256], Sha256));
    assert!(!accepts(&[Sha256], Md5), "a SHA-256-only config must not take MD5");
    assert!(!accepts(&[Md5], Sha256));
    let from = |a| Algorithm::from(a);
    assert_eq!(from(crate::config::DigestAlgorithm::Md5), Md5);
    assert_eq!(from(crate::config::DigestAlgorithm::Sha256), Sha256);
}

#[test]
fn issued_nonce_verifies_and_replay_is_rejected() {
    let mut store = NonceStore::new(TTL, 7);
    let t0 = Time::from_secs(100);
    let nonce = store.issue(t0);
    assert_eq!(nonce.len(), 48);
    assert!(nonce.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));

    // The phone computes with `pw`; the user's password is "secret".
    let v = |store: &mut NonceStore, nc, pw| verify(store, t0, "REGISTER", &pjsip(&nonce, nc, pw), "acd", "secret");
    assert_eq!(v(&mut store, 1, "secret"), Ok(()));
    assert_eq!(v(&mut store, 1, "secret"), Err(AuthFailure::Replay));
    assert_eq!(v(&mut store, 3, "secret"), Ok(()));
    assert_eq!(v(&mut store, 2, "secret"), Err(AuthFailure::Replay));
    // Without qop after counted uses: the nonce is not single-use any more.
    let mut r = pjsip(&nonce, 5, "secret");
    r.qop = None;
    r.response = expected_response(&r, "REGISTER", "secret");
    assert_eq!(verify(&mut store, t0, "REGISTER", &r, "acd", "secret"), Err(AuthFailure::Replay));
    // A wrong guess spends the nonce: the right password cannot follow
    // on it (one nonce took 1,000 guesses and then the password before).
    assert_eq!(v(&mut store, 9, "wrong"), Err(AuthFailure::BadResponse));
    assert_eq!(v(&mut store, 10, "secret"), Err(AuthFailure::Replay));
}

#[test]
fn unknown_user_fails_like_a_wrong_password_and_spends_the_nonce() {
    let mut store = NonceStore::new(TTL, 7);
    let nonce = store.issue(Time::ZERO);
    let r = pjsip(&nonce, 1, "guess");
    assert_eq!(verify_user(&mut store, Time::ZERO, "REGISTER", &r, "acd", None), Err(AuthFailure::BadResponse));
    assert_eq!(
        verify_user(&mut store, Time::ZERO, "REGISTER", &pjsip(&nonce, 2, "x"), "acd", None),
        Err(AuthFailure::Replay)
    );
}

#[test]
fn nonce_count_zero_is_rejected() {
    let mut store = NonceStore::new(TTL, 7);
    let nonce = store.issue(Time::ZERO);
    let r = pjsip(&nonce, 0, "secret");
    assert_eq!(verify(&mut store, Time::ZERO, "REGISTER", &r, "acd", "secret"), Err(AuthFailure::Replay));
}

#[test]
fn without_qop_a_nonce_is_single_use() {
    let mut store = NonceStore::new(TTL, 7);
    let nonce = store.issue(Time::ZERO);
    let mut r = pjsip(&nonce, 1, "secret");
    r.qop = None;
    r.nc = None;
    r.cnonce = None;
    r.response = expected_response(&r, "REGISTER", "secret");
    // RFC 2069 form: H(HA1:nonce:HA2).
    let ha1 = Algorithm::Md5.hash_hex(&["alice", "acd", "secret"]);
    let ha2 = Algorithm::Md5.hash_hex(&["REGISTER", "sip:127.0.0.1:5070"]);
    assert_eq!(r.response, Algorithm::Md5.hash_hex(&[&ha1, &nonce, &ha2]));

    assert_eq!(verify(&mut store, Time::ZERO, "REGISTER", &r, "acd", "secret"), Ok(()));
    assert_eq!(verify(&mut store, Time::ZERO, "REGISTER", &r, "acd", "secret"), Err(AuthFailure::Replay));
    // And a spent nonce cannot be revived with qop either.
    let q = pjsip(&nonce, 1, "secret");
    assert_eq!(verify(&mut store, Time::ZERO, "REGISTER", &q, "acd", "secret"), Err(AuthFailure::Replay));
}

#[test]
fn stale_exactly_at_ttl_and_after_purge() {
    let mut store = NonceStore::new(TTL, 7);
    let t0 = Time::from_secs(10);
    let nonce = store.issue(t0);
    let r = pjsip(&nonce, 1, "secret");
    let just_before = Time::from_millis(t0.as_millis() + 29_999);
    let at_ttl = t0 + TTL;
    assert_eq!(verify(&mut store, at_ttl, "REGISTER", &r, "acd", "secret"), Err(AuthFailure::Stale));
    assert_eq!(verify(&mut store, just_before, "REGISTER", &r, "acd", "secret"), Ok(()));

    // Issuing purges the expired nonce; it still reads as stale, not unknown.
    let fresh = store.issue(at_ttl);
    assert_eq!(store.len(), 1);
    let r2 = pjsip(&nonce, 2, "secret");
    assert_eq!(verify(&mut store, at_ttl, "REGISTER", &r2, "acd", "secret"), Err(AuthFailure::Stale));
    // The client retries with the new nonce from the stale=true challenge.
    let r3 = pjsip(&fresh, 1, "secret");
    assert_eq!(verify(&mut store, at_ttl, "REGISTER", &r3, "acd", "secret"), Ok(()));
}

#[test]
fn unknown_nonce_and_wrong_realm() {
    let mut store = NonceStore::new(TTL, 7);
    let t = Time::from_secs(5);
    let r = pjsip("abc", 1, "secret");
    assert_eq!(verify(&mut store, t, "REGISTER", &r, "acd", "secret"), Err(AuthFailure::UnknownNonce));
    // Our format but never issued, and not expired: unknown.
    let forged = format!("{:016x}{:032x}", t.as_millis(), 42u128);
    let r = pjsip(&forged, 1, "secret");
    assert_eq!(verify(&mut store, t, "REGISTER", &r, "acd", "secret"), Err(AuthFailure::UnknownNonce));

    let nonce = store.issue(t);
    let r = pjsip(&nonce, 1, "secret");
    assert_eq!(verify(&mut store, t, "REGISTER", &r, "other", "secret"), Err(AuthFailure::WrongRealm));
    // Method enters the digest.
    assert_eq!(verify(&mut store, t, "INVITE", &r, "acd", "secret"), Err(AuthFailure::BadResponse));
    // That failure spent the nonce.
    assert_eq!(verify(&mut store, t, "REGISTER", &r, "acd", "secret"), Err(AuthFailure::Replay));
    let nonce = store.issue(t);
    let r = pjsip(&nonce, 1, "secret");
    assert_eq!(verify(&mut store, t, "REGISTER", &r, "acd", "secret"), Ok(()));
}

#[test]
fn uppercase_hex_response_is_accepted() {
    let mut store = NonceStore::new(TTL, 7);
    let nonce = store.issue(Time::ZERO);
    let mut r = pjsip(&nonce, 1, "secret");
    r.response = r.response.to_ascii_uppercase();
    assert_eq!(verify(&mut store, Time::ZERO, "REGISTER", &r, "acd", "secret"), Ok(()));
}

#[test]
fn store_is_bounded_and_drops_the_oldest() {
    let mut store = NonceStore::with_limit(TTL, 7, 3);
    let first = store.issue(Time::ZERO);
    let others: Vec<String> = (1..=3).map(|i| store.issue(Time::from_millis(i))).collect();
    assert_eq!(store.len(), 3);
    let now = Time::from_millis(10);
    let r = pjsip(&first, 1, "secret");
    assert_eq!(verify(&mut store, now, "REGISTER", &r, "acd", "secret"), Err(AuthFailure::UnknownNonce));
    for n in &others {
        assert_eq!(verify(&mut store, now, "REGISTER", &pjsip(n, 1, "secret"), "acd", "secret"), Ok(()));
    }
    // Thousands of issues never grow it past the limit.
    for i in 0..5_000 {
        store.issue(Time::from_millis(20 + i));
    }
    assert_eq!(store.len(), 3);
    assert!(store.order.len() <= 3);
}

#[test]
fn purge_forgets_expired_nonces() {
    let mut store = NonceStore::new(TTL, 7);
    store.issue(Time::ZERO);
    store.issue(Time::from_secs(10));
    store.purge(Time::from_secs(29));
    assert_eq!(store.len(), 2);
    store.purge(Time::from_secs(30));
    assert_eq!(store.len(), 1);
    store.purge(Time::from_secs(40));
    assert!(store.is_empty());
}

#[test]
fn same_seed_same_nonces() {
    let mut a = NonceStore::new(TTL, 99);
    let mut b = NonceStore::new(TTL, 99);
    let mut c = NonceStore::new(TTL, 100);
    let (na, nb, nc) = (a.issue(Time::ZERO), b.issue(Time::ZERO), c.issue(Time::ZERO));
    assert_eq!(na, nb);
    assert_ne!(na, nc);
    assert_ne!(a.issue(Time::ZERO), na);
}
