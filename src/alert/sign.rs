//! Webhook signatures: `X-Healthmon-Signature: sha256=<hex>` over
//! `timestamp + "." + body` with the channel's secret (HMAC-SHA256), so a
//! receiver can tell our requests from forgeries, and a replay from a fresh
//! one by the timestamp it signs.

use ring::hmac;

/// The header value for `body` sent at `timestamp` (unix seconds).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex(ctx.sign().as_ref()))
}

/// Whether `header` is the signature of `body` at `timestamp`; compared in
/// constant time (for receivers written in Rust, and for the tests).
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = unhex(hex_sig) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut message = timestamp.to_string().into_bytes();
    message.push(b'.');
    message.extend_from_slice(body);
    hmac::verify(&key, &message, &tag).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body_in_hex() {
        // RFC 4231, test case 2: the primitive and the hex encoding.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex(tag.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // The signed message is the timestamp, a dot, then the body.
        let direct = hmac::sign(&key, b"1700000000.{}");
        assert_eq!(
            signature(b"Jefe", 1_700_000_000, b"{}"),
            format!("sha256={}", hex(direct.as_ref()))
        );
    }

    #[test]
    fn a_signature_verifies_only_for_its_secret_timestamp_and_body() {
        let sig = signature(b"s3cret", 1_700_000_000, br#"{"id":1}"#);
        assert!(verify(b"s3cret", 1_700_000_000, br#"{"id":1}"#, &sig));
        assert!(!verify(b"other", 1_700_000_000, br#"{"id":1}"#, &sig));
        assert!(!verify(b"s3cret", 1_700_000_001, br#"{"id":1}"#, &sig));
        assert!(!verify(b"s3cret", 1_700_000_000, br#"{"id":2}"#, &sig));
        assert!(!verify(
            b"s3cret",
            1_700_000_000,
            br#"{"id":1}"#,
            "sha256=zz"
        ));
        assert!(!verify(b"s3cret", 1_700_000_000, br#"{"id":1}"#, &sig[7..]));
    }
}
