//! The daemon's log output: the default filter and the redaction of
//! credentials.
//!
//! rsipstack logs every SIP message it sends and receives in full at `info`
//! (`raw_message = "..."`), Authorization headers included. acd's default
//! filter keeps rsipstack at `warn`, and whatever level an operator picks
//! (`ACD_LOG=debug`), every line goes through [`redact`] on its way out, so
//! a digest response never reaches a log file. The redaction works on the
//! formatted line, not per field: it covers acd's fields, rsipstack's raw
//! messages (CRLF escaped as `\r\n` by `Debug`, or real line breaks) and any
//! other crate's.

use std::borrow::Cow;
use std::io::{self, Write};
use tracing_subscriber::fmt::MakeWriter;

/// The filter when `ACD_LOG` is not set: acd at info, rsipstack's
/// per-message logs off (they cost 65 % of the lines at load and carry the
/// phones' credentials).
pub const DEFAULT_FILTER: &str = "info,rsipstack=warn";

/// Header names whose values are secrets (matched case-insensitively; the
/// `Proxy-` form contains the plain one).
const SECRET_HEADER: &[u8] = b"authorization:";

/// What replaces a secret header's value.
pub const REDACTED: &str = "<redacted>";

/// `line` with the value of every `Authorization:` / `Proxy-Authorization:`
/// header replaced by [`REDACTED`]. A value ends at a real line break or at
/// an escaped one (`\r` or `\n` as two characters, as `Debug` prints a raw
/// message). Borrowed when there is nothing to redact.
pub fn redact(line: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = find_header(line, 0) else {
        return Cow::Borrowed(line);
    };
    let mut out = Vec::with_capacity(line.len());
    let mut from = 0;
    let mut at = Some(first);
    while let Some(name_end) = at {
        // Keep the name and the spaces after the colon.
        let mut value = name_end;
        while value < line.len() && line[value] == b' ' {
            value += 1;
        }
        out.extend_from_slice(&line[from..value]);
        let end = value_end(line, value);
        if end > value {
            out.extend_from_slice(REDACTED.as_bytes());
        }
        from = end;
        at = find_header(line, end);
    }
    out.extend_from_slice(&line[from..]);
    Cow::Owned(out)
}

/// The index just past the next secret header name and its colon, at or
/// after `from`.
fn find_header(line: &[u8], from: usize) -> Option<usize> {
    let n = SECRET_HEADER.len();
    if line.len() < n {
        return None;
    }
    (from..=line.len() - n).find(|&i| line[i..i + n].eq_ignore_ascii_case(SECRET_HEADER)).map(|i| i + n)
}

fn value_end(line: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < line.len() {
        match line[i] {
            b'\r' | b'\n' => return i,
            b'\\' if matches!(line.get(i + 1), Some(b'r' | b'n')) => return i,
            _ => i += 1,
        }
    }
    i
}

/// A [`MakeWriter`] whose writers redact each formatted event before it
/// reaches `inner`. tracing-subscriber's fmt layer formats an event into one
/// buffer and writes it with one `write_all`, so a header never straddles
/// two writes.
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

pub struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&redact(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        String::from_utf8(redact(s.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn raw_messages_lose_their_credentials_and_keep_the_rest() {
        // As rsipstack logs a datagram: Debug-escaped, CRLF as `\r\n`.
        let line = r#"INFO udp received raw_message="REGISTER sip:acd SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2\r\nAuthorization: Digest username=\"anna\", response=\"6629fae49393a05397450978507c4ef1\"\r\nProxy-Authorization: Digest username=\"pbx\", response=\"abc\"\r\nContent-Length: 0\r\n\r\n""#;
        let out = r(line);
        assert!(!out.contains("6629fae4"), "{out}");
        assert!(!out.contains("response"), "{out}");
        assert!(
            out.contains(r"Authorization: <redacted>\r\nProxy-Authorization: <redacted>\r\nContent-Length: 0"),
            "{out}"
        );
        assert!(out.contains("Via: SIP/2.0/UDP 10.0.0.2"), "{out}");
        // Real line breaks and any case.
        assert_eq!(r("a\r\nauthorization:Digest x=1\r\nb"), "a\r\nauthorization:<redacted>\r\nb");
        assert_eq!(r("AUTHORIZATION: Digest x"), "AUTHORIZATION: <redacted>");
    }

    #[test]
    fn lines_without_credentials_pass_untouched() {
        let line = b"INFO registered user=anna source=10.0.0.2:5060\n";
        assert!(matches!(redact(line), Cow::Borrowed(_)));
        // The challenge is not a secret.
        assert_eq!(r("WWW-Authenticate: Digest nonce=\"1\""), "WWW-Authenticate: Digest nonce=\"1\"");
    }

    #[test]
    fn the_writer_redacts_what_it_writes() {
        let mut w = RedactingWriter(Vec::new());
        w.write_all(b"Authorization: Digest secret\n").unwrap();
        assert_eq!(String::from_utf8(w.0).unwrap(), "Authorization: <redacted>\n");
    }
}
