//! The client-to-server half of a WebSocket: frames read from the request
//! body. Clients have nothing to say; what they send only proves they are
//! alive, asks for a pong, or says goodbye.

use actix_http::ws::{CloseCode, OpCode, Parser, ProtocolError};
use actix_web::web::{self, Bytes, BytesMut};
use futures_util::StreamExt;

/// A frame's longest header: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEADER_BYTES: usize = 14;

/// What a client sent, as far as the session cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A ping, to be answered with its payload.
    Ping(Bytes),
    /// A close frame.
    Close,
    /// Anything else: a sign of life.
    Other,
}

/// Why a client's frames are refused; each closes with its own code
/// (RFC 6455, 7.4.1), so a client's developer learns what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Framing broken: unmasked, a fragmented control frame, a reserved
    /// opcode (1002).
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// A continuation frame with no message to continue, or a new message
    /// before the last one ended (1002).
    #[error("protocol error: {0}")]
    Fragments(&'static str),
    /// A binary message: the feed speaks JSON text only (1003).
    #[error("binary messages are not accepted")]
    Binary,
    /// A text message that is not UTF-8 (1007).
    #[error("a text message is not valid UTF-8")]
    NotUtf8,
    /// A frame or message longer than the limit (1009).
    #[error("a message is larger than {0} bytes")]
    TooBig(usize),
}

impl Refused {
    /// The close code the client gets.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Refused::Protocol(ProtocolError::Overflow) | Refused::TooBig(_) => CloseCode::Size,
            Refused::Protocol(_) | Refused::Fragments(_) => CloseCode::Protocol,
            Refused::Binary => CloseCode::Unsupported,
            Refused::NotUtf8 => CloseCode::Invalid,
        }
    }
}

/// Reads frames from a WebSocket's request body.
pub struct Inbound {
    payload: web::Payload,
    buf: BytesMut,
    max_frame: usize,
    messages: Messages,
}

impl Inbound {
    /// Frames and messages longer than `max_frame` bytes are refused as
    /// soon as their header and `max_frame` bytes have arrived, so a client
    /// holds at most a frame's worth of our memory whatever it declares.
    pub fn new(payload: web::Payload, max_frame: usize) -> Self {
        Inbound {
            payload,
            buf: BytesMut::new(),
            max_frame,
            messages: Messages {
                text: None,
                max: max_frame,
            },
        }
    }

    /// The next frame; `None` once the connection is gone. Safe to cancel:
    /// bytes are only taken from the body when they can be buffered at once.
    pub async fn next(&mut self) -> Option<Result<Frame, Refused>> {
        loop {
            // Unmasked frames from a client are a protocol error (`server`).
            match Parser::parse(&mut self.buf, true, self.max_frame) {
                Ok(Some((fin, op, payload))) => return Some(self.messages.judge(fin, op, payload)),
                // actix-http checks a frame's length only once the whole
                // frame is in: a header declaring a terabyte would otherwise
                // have us buffer whatever follows it.
                Ok(None) if self.buf.len() > self.max_frame + MAX_HEADER_BYTES => {
                    return Some(Err(ProtocolError::Overflow.into()));
                }
                Ok(None) => {}
                Err(e) => return Some(Err(e.into())),
            }
            match self.payload.next().await {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// The state between a client's frames: whether a text message is open.
struct Messages {
    /// The fragments so far of a text message whose last frame has not
    /// come; `None` between messages.
    text: Option<BytesMut>,
    /// The longest message accepted, bytes.
    max: usize,
}

impl Messages {
    /// Judges one frame within the message it belongs to.
    fn judge(
        &mut self,
        fin: bool,
        op: OpCode,
        payload: Option<BytesMut>,
    ) -> Result<Frame, Refused> {
        let payload = payload.unwrap_or_default();
        match op {
            // RFC 6455 5.5: control frames are never fragmented; they may
            // come between the fragments of a message.
            OpCode::Ping | OpCode::Pong | OpCode::Close if !fin => {
                Err(ProtocolError::BadOpCode.into())
            }
            OpCode::Ping => Ok(Frame::Ping(payload.freeze())),
            OpCode::Close => Ok(Frame::Close),
            OpCode::Pong => Ok(Frame::Other),
            OpCode::Binary => Err(Refused::Binary),
            OpCode::Text | OpCode::Continue => {
                let started = match (op, self.text.take()) {
                    (OpCode::Text, None) => payload,
                    (OpCode::Continue, Some(mut so_far)) => {
                        if so_far.len() + payload.len() > self.max {
                            return Err(Refused::TooBig(self.max));
                        }
                        so_far.extend_from_slice(&payload);
                        so_far
                    }
                    (OpCode::Text, Some(_)) => {
                        return Err(Refused::Fragments("a new message began inside another"));
                    }
                    _ => {
                        return Err(Refused::Fragments(
                            "a continuation with no message to continue",
                        ));
                    }
                };
                if fin {
                    std::str::from_utf8(&started).map_err(|_| Refused::NotUtf8)?;
                } else {
                    self.text = Some(started);
                }
                Ok(Frame::Other)
            }
            // The parser refuses reserved opcodes before they get here.
            OpCode::Bad => Err(ProtocolError::BadOpCode.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages() -> Messages {
        Messages { text: None, max: 8 }
    }

    fn text(s: &[u8]) -> Option<BytesMut> {
        Some(BytesMut::from(s))
    }

    fn code(r: Result<Frame, Refused>) -> Option<CloseCode> {
        r.err().map(|e| e.close_code())
    }

    #[test]
    fn text_in_one_frame_or_in_fragments_is_a_sign_of_life() {
        let mut m = messages();
        assert_eq!(
            m.judge(true, OpCode::Text, text(b"hi")).ok(),
            Some(Frame::Other)
        );
        assert_eq!(
            m.judge(false, OpCode::Text, text(b"\xC3")).ok(),
            Some(Frame::Other)
        );
        // A ping may come between the fragments of a message.
        assert!(matches!(
            m.judge(true, OpCode::Ping, text(b"p")),
            Ok(Frame::Ping(_))
        ));
        // "é" split across two frames is valid once whole.
        assert_eq!(
            m.judge(true, OpCode::Continue, text(b"\xA9")).ok(),
            Some(Frame::Other)
        );
        assert!(m.text.is_none());
    }

    #[test]
    fn each_kind_of_bad_frame_gets_its_close_code() {
        assert_eq!(
            code(messages().judge(true, OpCode::Binary, text(b"x"))),
            Some(CloseCode::Unsupported)
        );
        assert_eq!(
            code(messages().judge(true, OpCode::Text, text(b"\xFF"))),
            Some(CloseCode::Invalid)
        );
        assert_eq!(
            code(messages().judge(true, OpCode::Continue, text(b"x"))),
            Some(CloseCode::Protocol)
        );
        assert_eq!(
            code(messages().judge(false, OpCode::Ping, None)),
            Some(CloseCode::Protocol)
        );
        let mut m = messages();
        m.judge(false, OpCode::Text, text(b"a")).ok();
        assert_eq!(
            code(m.judge(true, OpCode::Text, text(b"b"))),
            Some(CloseCode::Protocol)
        );
        let mut m = messages();
        m.judge(false, OpCode::Text, text(b"12345")).ok();
        assert_eq!(
            code(m.judge(true, OpCode::Continue, text(b"6789"))),
            Some(CloseCode::Size)
        );
    }
}
