//! Where a health probe stands after being fed: shared by the HTTP/1.1
//! probe (`probe`) and the HTTP/2 one (`h2probe`).

/// Where a probe stands after being fed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// No status yet: keep reading.
    Pending,
    /// The final response status arrived: judge it.
    Status(u16),
    /// The exchange failed without a status.
    Failed(String),
}
