//! The RPC port: frames in, one reply frame per request out, in order.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use auth::{Action, AuthFailure, Denied, Session};
use framing::frame::{self, Decoded, FrameError};
use framing::rpc::{self, ErrorCode, KeyGrant, LotStatus, Reply, Request, WireError};
use state::{Plate, StateError, UnknownLot, shown};
use store::Store;
use warn_limit::peer_warn;

use crate::connection::{Protocol, Served};

/// Answers RPC requests: reads from the store's in-memory state, writes through the store.
pub struct RpcProtocol {
    store: Arc<dyn Store>,
    requests: AtomicU64,
}

impl RpcProtocol {
    /// Serves `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        RpcProtocol {
            store,
            requests: AtomicU64::new(0),
        }
    }

    /// Requests answered so far (errors included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Runs one decoded request against the state, as `session` allows. A failed `auth`
    /// that closes the connection sets `close`.
    fn execute(
        &self,
        request: &Request<'_>,
        session: &mut Session,
        peer: SocketAddr,
        close: &mut bool,
    ) -> Result<Reply<'static>, WireError> {
        let action = match request {
            Request::Ping => return Ok(Reply::Pong),
            Request::Auth { token } => {
                return match session.authenticate(token.expose(), "rpc", peer, Instant::now()) {
                    Ok(identity) => Ok(Reply::Authenticated(KeyGrant {
                        id: Cow::Owned(identity.id().as_str().to_owned()),
                        role: Cow::Borrowed(identity.role().as_str()),
                    })),
                    Err(failure) => {
                        *close = failure.closes();
                        let code = match failure {
                            AuthFailure::NotConfigured => ErrorCode::BadRequest,
                            _ => ErrorCode::Unauthorized,
                        };
                        Err(WireError::new(code, failure.to_string()))
                    }
                };
            }
            Request::GetLots | Request::GetAvailability { .. } => Action::Read,
            Request::Reserve { .. } => Action::Reserve,
            Request::Cancel { .. } => Action::Cancel,
        };
        session.check(action).map_err(|denied| match denied {
            Denied::Unauthenticated => WireError::new(
                ErrorCode::Unauthorized,
                "authenticate first: method auth with args [token] (text: AUTH <token>)",
            ),
            forbidden => WireError::new(ErrorCode::Forbidden, forbidden.to_string()),
        })?;
        let unknown_lot = |UnknownLot(lot): UnknownLot| {
            WireError::new(
                ErrorCode::UnknownLot,
                format!("no lot with id {}", shown(&lot)),
            )
        };
        let refused = |error: StateError| match error {
            StateError::UnknownLot(lot) => unknown_lot(lot),
            StateError::Unavailable(why) => WireError::new(ErrorCode::Unavailable, why.to_string()),
        };
        let plate = |plate: &str| {
            Plate::parse(plate).map_err(|err| WireError::new(ErrorCode::BadPlate, err.to_string()))
        };
        Ok(match request {
            // Answered above.
            Request::Ping | Request::Auth { .. } => Reply::Pong,
            Request::GetLots => Reply::Lots(
                self.store
                    .state()
                    .lots()
                    .into_iter()
                    .map(|lot| LotStatus {
                        id: Cow::Owned(lot.id.as_str().to_owned()),
                        capacity: lot.capacity,
                        occupied: lot.occupied,
                        counted: lot.counted,
                        reserved: lot.reserved,
                        free: lot.free,
                    })
                    .collect(),
            ),
            Request::GetAvailability { lot } => {
                Reply::Free(self.store.state().free(lot).map_err(unknown_lot)?)
            }
            Request::Reserve { lot, plate: text } => {
                let outcome = self
                    .store
                    .reserve(lot, plate(text)?, session.owner())
                    .map_err(refused)?;
                Reply::Reserve(outcome)
            }
            Request::Cancel { lot, plate: text } => {
                // Another key's reservation is "not found": who holds what is not told.
                let outcome = self
                    .store
                    .cancel(lot, plate(text)?, &|owner| session.may_cancel(owner))
                    .map_err(refused)?;
                Reply::Cancel(outcome)
            }
        })
    }

    /// Appends the reply frame for one request payload; true if the connection must close
    /// after it.
    fn answer(
        &self,
        payload: &[u8],
        out: &mut Vec<u8>,
        peer: SocketAddr,
        session: &mut Session,
    ) -> bool {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut close = false;
        let json = rpc::is_json(payload);
        let framed = frame::encode_with(out, |out| {
            if json {
                match rpc::decode_json_request(payload) {
                    Ok((rpc_id, request)) => {
                        let result = self.execute(&request, session, peer, &mut close);
                        log_outcome(peer, &request, result.as_ref().err());
                        rpc::encode_json_reply(out, Some(rpc_id), result.as_ref());
                    }
                    Err(rejected) => {
                        warn_malformed(peer, &rejected.error);
                        rpc::encode_json_reply(out, rejected.rpc_id, Err(&rejected.error));
                    }
                }
            } else {
                match rpc::decode_text_request(payload) {
                    Ok(request) => {
                        let result = self.execute(&request, session, peer, &mut close);
                        log_outcome(peer, &request, result.as_ref().err());
                        rpc::encode_text_reply(out, result.as_ref());
                    }
                    Err(error) => {
                        warn_malformed(peer, &error);
                        rpc::encode_text_reply(out, Err(&error));
                    }
                }
            }
        });
        if let Err(err) = framed {
            // Only a getLots over thousands of lots could get here; say so instead of sending
            // a frame the peer must refuse.
            log::error!("rpc {peer}: reply not sent: {err}");
            let error = WireError::new(ErrorCode::BadRequest, "reply would exceed the frame limit");
            let _ = frame::encode_with(out, |out| rpc::encode_text_reply(out, Err(&error)));
        }
        close
    }
}

fn log_outcome(peer: SocketAddr, request: &Request<'_>, error: Option<&WireError>) {
    match error {
        None => log::trace!("rpc {peer}: {request:?}"),
        // The method name, not the arguments: those are the peer's and could be megabytes.
        Some(error) => log::debug!("rpc {peer}: {} refused: {error}", request.method().name()),
    }
}

fn warn_malformed(peer: SocketAddr, error: &WireError) {
    peer_warn!("rpc {peer}: malformed request: {error}");
}

impl Protocol for RpcProtocol {
    fn name(&self) -> &'static str {
        "rpc"
    }

    fn max_request_len(&self) -> usize {
        frame::HEADER_LEN + framing::MAX_FRAME_LEN
    }

    fn serve(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        peer: SocketAddr,
        session: &mut Session,
    ) -> Served {
        let mut consumed = 0;
        loop {
            match frame::decode(&input[consumed..]) {
                Ok(Decoded::Frame {
                    payload,
                    consumed: used,
                }) => {
                    let payload = &input[consumed..][payload];
                    if self.answer(payload, out, peer, session) {
                        // Too many wrong tokens: what follows is not answered.
                        return Served {
                            consumed: input.len(),
                            close: true,
                        };
                    }
                    consumed += used;
                }
                Ok(Decoded::Incomplete { .. }) => {
                    return Served {
                        consumed,
                        close: false,
                    };
                }
                Err(FrameError::TooLarge { len }) => {
                    let error = WireError::new(
                        ErrorCode::FrameTooLarge,
                        format!(
                            "frame of {len} bytes exceeds the {} byte limit; closing",
                            framing::MAX_FRAME_LEN
                        ),
                    );
                    peer_warn!("rpc {peer}: {error}");
                    // A short error always fits in a frame.
                    let _ = frame::encode_with(out, |out| {
                        rpc::encode_json_reply(out, None, Err(&error));
                    });
                    return Served {
                        consumed: input.len(),
                        close: true,
                    };
                }
                Err(other) => {
                    // `decode` reports nothing else; close rather than guess.
                    log::error!("rpc {peer}: unexpected framing error: {other}");
                    return Served {
                        consumed: input.len(),
                        close: true,
                    };
                }
            }
        }
    }

    fn busy_reply(&self, out: &mut Vec<u8>, detail: &str) {
        let error = WireError::new(ErrorCode::Busy, detail);
        let _ = frame::encode_with(out, |out| rpc::encode_json_reply(out, None, Err(&error)));
    }
}
