//! The HTTP/1.1 client's end of a pass-through exchange (an HTTP/1.1
//! client of an HTTP/1.1 upstream): the session lends its socket, input
//! and output buffers and the request's client-side state to the
//! exchange's upstream side for the duration of a step, so that bodies go
//! socket to socket with their framing and heads are rewritten once —
//! nothing is re-framed or copied on the way (the figures in the README's
//! performance section depend on it).

use super::body::Relay;
use super::env::Env;
use super::io::{self, Io};
use crate::buffer::Buf;
use crate::event::Stream;
use crate::http::{self, errors};
use std::net::SocketAddr;

/// One request as its HTTP/1.1 client sent it: what the response and the
/// connection's future depend on.
#[derive(Clone, Copy)]
pub struct ClientRequest {
    pub is_head: bool,
    pub minor: u8,
    /// The client lets the connection go on after the response.
    pub keep_alive: bool,
    /// The client asked to switch protocols (Connection: upgrade).
    pub upgrade: bool,
    /// The request body, relayed as the client framed it.
    pub body: Relay,
    /// The connection goes on after this response (decided with its head).
    pub keep_after: bool,
    /// The response was cut short: the connection must close.
    pub aborted: bool,
    /// The response's end is the connection's (no length, not chunked: an
    /// HTTP/1.0 client, or an upstream body ending at its close): cut
    /// short, the connection is reset, not closed.
    pub close_delimited: bool,
}

impl ClientRequest {
    pub const NONE: ClientRequest = ClientRequest {
        is_head: false,
        minor: 1,
        keep_alive: false,
        upgrade: false,
        body: Relay::EMPTY,
        keep_after: false,
        aborted: false,
        close_delimited: false,
    };

    /// The request body was cut short (early response, error): the client
    /// may still be sending it.
    #[inline]
    pub fn upload_cut_short(&self) -> bool {
        !self.body.is_complete()
    }

    /// After a failure before the request body was read, the connection
    /// can continue only if there was no body to skip.
    pub fn can_keep_after_error(&self) -> bool {
        self.keep_alive && self.body.sent == 0 && self.body.body.is_complete()
    }
}

/// The session's end, borrowed for one step of the exchange.
pub struct H1Client<'a> {
    pub stream: &'a mut Stream,
    pub readable: &'a mut bool,
    pub writable: &'a mut bool,
    /// An event reported the client's FIN or an error.
    pub hup: bool,
    /// Bytes from the client: the request body, then what follows it.
    pub input: &'a mut Option<Buf>,
    /// Heads (and forklb's own answers) for the client; `out_pos` of them
    /// are written.
    pub out: &'a mut Option<Vec<u8>>,
    pub out_pos: &'a mut usize,
    pub req: &'a mut ClientRequest,
    pub peer: SocketAddr,
}

/// What `flush_out` did.
pub enum Flush {
    /// Nothing (more) is pending.
    Done,
    /// Bytes are still pending; `wrote`: some went out.
    Pending {
        wrote: bool,
    },
    Failed,
}

impl H1Client<'_> {
    /// The same end, for a shorter borrow.
    pub fn reborrow(&mut self) -> H1Client<'_> {
        H1Client {
            stream: self.stream,
            readable: self.readable,
            writable: self.writable,
            hup: self.hup,
            input: self.input,
            out: self.out,
            out_pos: self.out_pos,
            req: self.req,
            peer: self.peer,
        }
    }

    /// The output buffer, from the pool if there is none.
    pub fn out_buf(&mut self, env: &mut Env) -> &mut Vec<u8> {
        self.out.get_or_insert_with(|| env.heads.get())
    }

    /// Writes pending bytes of `out` to the client.
    pub fn flush_out(&mut self) -> Flush {
        let Some(out) = self.out.as_ref() else {
            return Flush::Done;
        };
        if *self.out_pos >= out.len() {
            return Flush::Done;
        }
        if !*self.writable {
            return Flush::Pending { wrote: false };
        }
        match io::write(self.stream, &out[*self.out_pos..], self.writable) {
            Io::Done(n) => {
                *self.out_pos += n;
                if *self.out_pos >= out.len() {
                    Flush::Done
                } else {
                    Flush::Pending { wrote: true }
                }
            }
            Io::Blocked => Flush::Pending { wrote: false },
            Io::Eof | Io::Failed(_) => Flush::Failed,
        }
    }

    /// A final response came before the whole request body was sent: the
    /// upload stops here (nothing more is forwarded; what the client sent
    /// meanwhile is dropped, the rest discarded as it comes, then the
    /// connection lingers). Interim responses not begun (our own `100
    /// Continue` among them) are dropped: the client needs only the final
    /// one, and a client that waits for `100 Continue` sends no body.
    pub fn early_response(&mut self) {
        if let Some(b) = self.input.as_mut() {
            b.clear();
        }
        if *self.out_pos == 0 {
            if let Some(out) = self.out.as_mut() {
                out.clear();
            }
        }
    }

    /// Reads what the client sent and throws it away: the rest of an upload
    /// that is not forwarded. Read beneath TLS (the session is over for
    /// reading), into a large buffer if one is free, which goes back to the
    /// pool as soon as the socket is empty.
    pub fn discard_input(&mut self, env: &mut Env) -> Io {
        discard_input(self.stream, self.input, self.readable, self.hup, env)
    }

    /// One of forklb's error pages, as the session writes its own: the
    /// connection goes on after it only if `keep_ok` (the failure was the
    /// upstream's, before anything of the request body was read) and the
    /// client allows.
    pub fn error_page(&mut self, env: &mut Env, status: u16, keep_ok: bool) {
        let keep = keep_ok && self.req.can_keep_after_error() && !env.draining;
        let is_head = self.req.is_head;
        // It replaces what is not begun (our own `100 Continue`): the
        // client needs only the answer.
        let pos = *self.out_pos;
        if let Some(out) = self.out.as_mut().filter(|o| pos == 0 || pos >= o.len()) {
            out.clear();
            *self.out_pos = 0;
        }
        let out = self.out_buf(env);
        errors::write_error(out, status, keep, is_head, env.date.text());
        self.req.keep_after = keep;
    }
}

/// See `H1Client::discard_input`; also for a lingering session.
pub fn discard_input(
    stream: &mut Stream,
    input: &mut Option<Buf>,
    readable: &mut bool,
    hup: bool,
    env: &mut Env,
) -> Io {
    if !*readable {
        return Io::Blocked;
    }
    if let Some(b) = input.as_mut() {
        b.clear();
    }
    env.bufs.upgrade(input);
    let buf = input.get_or_insert_with(|| env.bufs.get());
    let got = io::read_raw(stream.sock_mut(), buf.spare(), readable, hup);
    buf.clear();
    if !matches!(got, Io::Done(_)) && input.as_ref().is_some_and(Buf::is_empty) {
        if let Some(b) = input.take() {
            env.bufs.put(b);
        }
    }
    got
}

/// An HTTP/1.1 status line and header fields, ending the head.
pub fn write_head(out: &mut Vec<u8>, status: u16, headers: &[(&[u8], &[u8])]) {
    use std::io::Write;
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", errors::reason(status));
    http::write_fields(out, headers.iter().copied());
    out.extend_from_slice(b"\r\n");
}
