//! The client-to-server half of a WebSocket: frames read from the request
//! body. Clients have nothing to say; what they send only proves they are
//! alive, asks for a pong, or says goodbye.

use actix_http::ws::{OpCode, Parser, ProtocolError};
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

/// Reads frames from a WebSocket's request body.
pub struct Inbound {
    payload: web::Payload,
    buf: BytesMut,
    max_frame: usize,
}

impl Inbound {
    /// Frames longer than `max_frame` bytes are refused as errors once their
    /// header and `max_frame` bytes have arrived, so a client holds at most a
    /// frame's worth of our memory whatever length it declares.
    pub fn new(payload: web::Payload, max_frame: usize) -> Self {
        Inbound {
            payload,
            buf: BytesMut::new(),
            max_frame,
        }
    }

    /// The next frame; `None` once the connection is gone. Safe to cancel:
    /// bytes are only taken from the body when they can be buffered at once.
    pub async fn next(&mut self) -> Option<Result<Frame, ProtocolError>> {
        loop {
            // Unmasked frames from a client are a protocol error (`server`).
            match Parser::parse(&mut self.buf, true, self.max_frame) {
                // RFC 6455 5.5: control frames are never fragmented.
                Ok(Some((false, OpCode::Ping | OpCode::Pong | OpCode::Close, _))) => {
                    return Some(Err(ProtocolError::BadOpCode));
                }
                Ok(Some((_, op, payload))) => {
                    return Some(Ok(match op {
                        OpCode::Ping => {
                            Frame::Ping(payload.map(BytesMut::freeze).unwrap_or_default())
                        }
                        OpCode::Close => Frame::Close,
                        _ => Frame::Other,
                    }));
                }
                // actix-http checks a frame's length only once the whole
                // frame is in: a header declaring a terabyte would otherwise
                // have us buffer whatever follows it.
                Ok(None) if self.buf.len() > self.max_frame + MAX_HEADER_BYTES => {
                    return Some(Err(ProtocolError::Overflow));
                }
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            match self.payload.next().await {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                Some(Err(_)) | None => return None,
            }
        }
    }
}
