//! What the worker lends a client connection while driving it, and what
//! the connection tells the worker back.

use super::h2_upstream::H2Upstreams;
use super::pool::Pool;
use crate::access_log::AccessLog;
use crate::balance::Balancer;
use crate::buffer::{BufPool, VecPool};
use crate::event::token::UpstreamOwners;
use crate::http::date::DateCache;
use crate::route::Runtime;
use crate::shm::Shm;
use mio::Registry;
use std::time::Instant;

/// What the worker lends a connection while driving it.
pub struct Env<'a> {
    pub rt: &'a Runtime,
    pub registry: &'a Registry,
    pub bufs: &'a mut BufPool,
    pub heads: &'a mut VecPool,
    pub balancers: &'a mut [Balancer],
    pub pool: &'a mut Pool,
    /// Which connection uses each upstream socket (by upstream slot).
    pub up_owners: &'a mut UpstreamOwners,
    pub access: &'a mut AccessLog,
    /// State shared with the other workers (server states, counters).
    pub shm: &'a Shm,
    /// This worker's slot (its counters in `shm`).
    pub slot: usize,
    pub now: Instant,
    /// `now` on the shared monotonic clock, in milliseconds (the clock of
    /// passive marks in shared memory and of the servers' time averages):
    /// read once per round of events, not per request.
    pub now_ms: u64,
    /// The `Date` of responses sent now (refreshed by the event loop).
    pub date: &'a DateCache,
    /// The worker is shutting down gracefully: finish, then close.
    pub draining: bool,
    /// HTTP/2 connections to upstreams, shared by all client connections.
    pub h2up: &'a mut H2Upstreams,
    /// Client connections (slots) with news from a shared upstream
    /// connection: the worker drives them next.
    pub wake: &'a mut Vec<usize>,
    /// This worker's requests waiting for a server slot (`maxconn`).
    pub queues: &'a mut super::queue::Queues,
    /// A dashboard change altered runtime state: the worker tells the
    /// master (`worker::STATE_CHANGED`), which rewrites the state file.
    pub state_changed: &'a mut bool,
}

impl Env<'_> {
    /// A response with `status` went to a client of `listener` (its
    /// FRONTEND row's `hrsp_*`).
    #[inline]
    pub fn count_response(&self, listener: usize, status: u16) {
        if let Some(l) = self.shm.listener_counts(self.slot, listener) {
            l.count_response(status);
        }
    }

    /// A request head arrived on `listener`: counted for the worker (the
    /// instance's totals) and for the listener (its FRONTEND row).
    #[inline]
    pub fn count_request(&self, listener: usize) {
        self.shm.worker(self.slot).count_request();
        if let Some(l) = self.shm.listener_counts(self.slot, listener) {
            l.count_request();
        }
    }
}

/// What the worker should do with the connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Keep,
    Close,
    /// The client spoke the HTTP/2 preface where HTTP/2 is allowed: its
    /// transport goes to an `H2Session` (see `Conn::into_transport`).
    Http2,
}

/// The settings forklb announces on every HTTP/2 connection, to clients
/// and to upstreams (config `http2:`; frames of the RFC's minimum size).
pub fn h2_settings(rt: &Runtime) -> crate::h2::Settings {
    let s = rt.http2;
    crate::h2::Settings {
        max_concurrent_streams: s.max_concurrent_streams,
        initial_window_size: s.initial_window_size,
        max_header_list_size: s.max_header_list_size,
        max_frame_size: 16_384,
    }
}
