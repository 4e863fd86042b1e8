//! Strangers: connections whose first message is not a binary powchain `hello` (a node
//! of the node.js tutorial sends `{"type":"CHAIN","chain":[...]}` as a text frame). They
//! are told why in a WebSocket close frame and the node logs one line (within the
//! connection-line budget), instead of dropping them silently.
//!
//! ```text
//!   first frame (handshake.rs) ──▶ Stranger ──▶ log "not a powchain peer: ..." (budgeted)
//!                                          └──▶ close frame (code, reason) ──▶ wait up to
//!                                               CLOSE_GRACE for the peer's close ──▶ drop
//! ```
//!
//! The rules are the handshake's: a text or control frame is closed without a ban; a
//! binary frame that is not a hello bans (`expected-hello`, or the rule its bytes break);
//! more than the pre-hello budget is closed without a ban. While the close frame goes
//! out, the pre-hello read budget still holds, and it all ends within [`CLOSE_GRACE`].

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::console::preview;
use crate::pending::PRE_HELLO_BYTES;
use crate::service::P2p;

/// What a stranger is told, the start of every close reason it gets.
pub(crate) const NOT_A_POWCHAIN_PEER: &str = "not a powchain peer: expected a binary hello";
/// The longest reason a close frame may carry (RFC 6455: 125 bytes of payload, 2 of them
/// the code).
pub(crate) const MAX_CLOSE_REASON_BYTES: usize = 123;
/// How long the node waits for a stranger's answer to its close frame before dropping
/// the connection (closing the socket at once could reset it under the frame).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a stranger sent instead of a binary hello.
#[derive(Debug)]
pub(crate) enum Stranger {
    /// A text frame: the start of its text, printable (console.rs `preview`).
    Text(String),
    /// A ping, pong or raw frame.
    Control(&'static str),
    /// A binary protocol message other than hello: banned for `expected-hello`.
    OtherMessage(&'static str),
    /// Binary bytes that do not decode: banned for the rule they break.
    Undecodable(&'static str),
    /// More than the pre-hello budget before a hello.
    TooMuch,
}

impl Stranger {
    /// Describes a first frame that is neither binary nor a close.
    pub(crate) fn of_frame(frame: &Frame) -> Stranger {
        match frame {
            Frame::Text(text) => Stranger::Text(preview(text.as_str())),
            Frame::Ping(_) => Stranger::Control("a WebSocket ping"),
            Frame::Pong(_) => Stranger::Control("a WebSocket pong"),
            Frame::Binary(_) => Stranger::Control("a binary frame"),
            Frame::Close(_) => Stranger::Control("a close frame"),
            Frame::Frame(_) => Stranger::Control("a raw frame"),
        }
    }

    /// The rule it broke, if it is banned for it.
    pub(crate) fn banned_for(&self) -> Option<&'static str> {
        match self {
            Stranger::OtherMessage(_) => Some("expected-hello"),
            Stranger::Undecodable(rule) => Some(rule),
            Stranger::Text(_) | Stranger::Control(_) | Stranger::TooMuch => None,
        }
    }

    /// The close frame's code: 1009 for too much, 1008 (policy) when banned, else 1002
    /// (protocol error).
    pub(crate) fn close_code(&self) -> CloseCode {
        match self {
            Stranger::TooMuch => CloseCode::Size,
            _ if self.banned_for().is_some() => CloseCode::Policy,
            _ => CloseCode::Protocol,
        }
    }

    /// The close frame's reason, at most [`MAX_CLOSE_REASON_BYTES`].
    pub(crate) fn close_reason(&self) -> String {
        let reason = match self {
            Stranger::Text(_) | Stranger::Control(_) => NOT_A_POWCHAIN_PEER.to_owned(),
            Stranger::OtherMessage(name) => {
                format!("{NOT_A_POWCHAIN_PEER}, got {name} (banned: expected-hello)")
            }
            Stranger::Undecodable(rule) => format!("{NOT_A_POWCHAIN_PEER} (banned: {rule})"),
            Stranger::TooMuch => {
                format!("{NOT_A_POWCHAIN_PEER} (more than {PRE_HELLO_BYTES} bytes came first)")
            }
        };
        cut_to(reason, MAX_CLOSE_REASON_BYTES)
    }

    /// What it sent, for the log line.
    fn sent(&self) -> String {
        match self {
            Stranger::Text(start) => format!("a text frame ({start})"),
            Stranger::Control(what) => (*what).to_owned(),
            Stranger::OtherMessage(name) => format!("a {name} message"),
            Stranger::Undecodable(rule) => format!("bytes that are not a message ({rule})"),
            Stranger::TooMuch => format!("more than {PRE_HELLO_BYTES} bytes"),
        }
    }

    /// `not a powchain peer: 127.0.0.1:40312 (inbound) sent a text frame
    /// ({"type":"CHAIN","chain":[]}) first, not a binary hello; closed`.
    pub(crate) fn line(&self, who: &str, outbound: bool) -> String {
        let direction = if outbound { "outbound" } else { "inbound" };
        let banned = self
            .banned_for()
            .map_or_else(String::new, |rule| format!(" and banned for {rule}"));
        format!(
            "not a powchain peer: {who} ({direction}) sent {} first, not a binary hello; closed{banned}",
            self.sent()
        )
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut_to(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl P2p {
    /// Logs a stranger (within the connection-line budget), sends it a close frame with
    /// the reason, and waits a moment for its answer. Bans are the caller's.
    pub(crate) async fn refuse_stranger<S>(
        &self,
        stranger: &Stranger,
        who: &str,
        outbound: bool,
        sink: &mut SplitSink<WebSocketStream<S>, Frame>,
        stream: &mut SplitStream<WebSocketStream<S>>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.warn_connection(stranger.line(who, outbound));
        let close = CloseFrame {
            code: stranger.close_code(),
            reason: stranger.close_reason().into(),
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            if sink.send(Frame::Close(Some(close))).await.is_err() {
                return;
            }
            // Its answer (or whatever it still sends, within the pre-hello budget) until
            // it closes too.
            while let Some(Ok(frame)) = stream.next().await {
                if matches!(frame, Frame::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Stranger> {
        vec![
            Stranger::Text(preview(r#"{"type":"CHAIN","chain":[]}"#)),
            Stranger::Control("a WebSocket ping"),
            Stranger::OtherMessage("getheaders"),
            Stranger::Undecodable("wrong-protocol-version"),
            Stranger::TooMuch,
        ]
    }

    #[test]
    fn every_reason_fits_a_close_frame_and_says_what_was_expected() {
        for stranger in every_kind() {
            let reason = stranger.close_reason();
            assert!(reason.len() <= MAX_CLOSE_REASON_BYTES, "{reason}");
            assert!(reason.starts_with(NOT_A_POWCHAIN_PEER), "{reason}");
        }
        assert_eq!(
            Stranger::Text("x".into()).close_reason(),
            "not a powchain peer: expected a binary hello"
        );
    }

    #[test]
    fn codes_tell_a_ban_from_a_protocol_error_and_from_too_much() {
        assert_eq!(Stranger::Text("x".into()).close_code(), CloseCode::Protocol);
        assert_eq!(
            Stranger::Control("a ping").close_code(),
            CloseCode::Protocol
        );
        assert_eq!(
            Stranger::OtherMessage("ping").close_code(),
            CloseCode::Policy
        );
        assert_eq!(
            Stranger::Undecodable("malformed-message").close_code(),
            CloseCode::Policy
        );
        assert_eq!(Stranger::TooMuch.close_code(), CloseCode::Size);
    }

    #[test]
    fn the_log_line_names_the_address_and_what_came() {
        let line = Stranger::Text(preview(r#"{"type":"CHAIN","chain":[]}"#))
            .line("127.0.0.1:40312", false);
        assert_eq!(
            line,
            r#"not a powchain peer: 127.0.0.1:40312 (inbound) sent a text frame ({"type":"CHAIN","chain":[]}) first, not a binary hello; closed"#
        );
        let line = Stranger::OtherMessage("ping").line("ws://127.0.0.1:5002", true);
        assert!(
            line.ends_with("closed and banned for expected-hello"),
            "{line}"
        );
        assert!(line.contains("(outbound)"), "{line}");
    }

    #[test]
    fn a_reason_is_cut_on_a_character_boundary() {
        assert_eq!(cut_to("ééé".to_owned(), 3), "é");
        assert_eq!(cut_to("abc".to_owned(), 3), "abc");
    }
}
