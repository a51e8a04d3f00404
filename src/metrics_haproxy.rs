//! `metrics: haproxy`: the instance's counters under the names, labels,
//! types and HELP texts of HAProxy 2.6's built-in Prometheus exporter
//! (`haproxy_process_*`, `haproxy_frontend_*`, `haproxy_backend_*`,
//! `haproxy_server_*`; labels `proxy`, `server`, `code`, `state`), so
//! dashboards and alerts written for HAProxy read forklb unchanged.
//!
//! The data is `show stat`'s rows and `show info`'s fields (one mapping
//! from shared memory, `admin::stat` and `admin::info`), so the runtime
//! API and both metrics formats never disagree. A family whose data forklb
//! does not have is left out, not filled with zeros; the list and the HELP
//! texts are HAProxy 2.6.12's own, in its order.

use crate::admin::info::{self, InfoSource};
use crate::admin::stat::{self, Kind, Row, Source};
use crate::route::Runtime;
use crate::shm::Shm;
use std::fmt::Write;

/// Which rows a family reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Obj {
    Process,
    Frontend,
    Backend,
    Server,
}

/// Where a family's values come from.
#[derive(Clone, Copy)]
enum Src {
    /// A `show info` field.
    Info(&'static str),
    /// `haproxy_process_build_info{version="..."} 1`.
    BuildInfo,
    /// A `show stat` field, as it is.
    Field(&'static str),
    /// A `show stat` field in milliseconds, reported in seconds.
    Millis(&'static str),
    /// `status`, one sample per state label (1 for the current one).
    Status,
    /// `check_status`, one sample per check result label.
    CheckStatus,
    /// `hrsp_1xx` .. `hrsp_other`, one sample per `code` label.
    Responses,
}

struct Family {
    name: &'static str,
    ty: &'static str,
    help: &'static str,
    obj: Obj,
    src: Src,
}

#[rustfmt::skip]
const FAMILIES: &[Family] = &[
    Family { name: "haproxy_process_nbthread", ty: "gauge", help: "Number of started threads (global.nbthread)", obj: Obj::Process, src: Src::Info("Nbthread") },
    Family { name: "haproxy_process_nbproc", ty: "gauge", help: "Number of started worker processes (historical, always 1)", obj: Obj::Process, src: Src::Info("Nbproc") },
    Family { name: "haproxy_process_relative_process_id", ty: "gauge", help: "Relative worker process number (1)", obj: Obj::Process, src: Src::Info("Process_num") },
    Family { name: "haproxy_process_uptime_seconds", ty: "gauge", help: "How long ago this worker process was started (seconds)", obj: Obj::Process, src: Src::Info("Uptime_sec") },
    Family { name: "haproxy_process_max_fds", ty: "gauge", help: "Hard limit on the number of per-process file descriptors", obj: Obj::Process, src: Src::Info("Ulimit-n") },
    Family { name: "haproxy_process_max_sockets", ty: "gauge", help: "Hard limit on the number of per-process sockets", obj: Obj::Process, src: Src::Info("Maxsock") },
    Family { name: "haproxy_process_max_connections", ty: "gauge", help: "Hard limit on the number of per-process connections (configured or imposed by Ulimit-n)", obj: Obj::Process, src: Src::Info("Maxconn") },
    Family { name: "haproxy_process_hard_max_connections", ty: "gauge", help: "Hard limit on the number of per-process connections (imposed by Memmax_MB or Ulimit-n)", obj: Obj::Process, src: Src::Info("Hard_maxconn") },
    Family { name: "haproxy_process_current_connections", ty: "gauge", help: "Current number of connections on this worker process", obj: Obj::Process, src: Src::Info("CurrConns") },
    Family { name: "haproxy_process_connections_total", ty: "counter", help: "Total number of connections on this worker process since started", obj: Obj::Process, src: Src::Info("CumConns") },
    Family { name: "haproxy_process_requests_total", ty: "counter", help: "Total number of requests on this worker process since started", obj: Obj::Process, src: Src::Info("CumReq") },
    Family { name: "haproxy_process_current_connection_rate", ty: "gauge", help: "Number of front connections created on this worker process over the last second", obj: Obj::Process, src: Src::Info("ConnRate") },
    Family { name: "haproxy_process_limit_connection_rate", ty: "gauge", help: "Hard limit for ConnRate (global.maxconnrate)", obj: Obj::Process, src: Src::Info("ConnRateLimit") },
    Family { name: "haproxy_process_max_connection_rate", ty: "gauge", help: "Highest ConnRate reached on this worker process since started (in connections per second)", obj: Obj::Process, src: Src::Info("MaxConnRate") },
    Family { name: "haproxy_process_current_session_rate", ty: "gauge", help: "Number of sessions created on this worker process over the last second", obj: Obj::Process, src: Src::Info("SessRate") },
    Family { name: "haproxy_process_limit_session_rate", ty: "gauge", help: "Hard limit for SessRate (global.maxsessrate)", obj: Obj::Process, src: Src::Info("SessRateLimit") },
    Family { name: "haproxy_process_max_session_rate", ty: "gauge", help: "Highest SessRate reached on this worker process since started (in sessions per second)", obj: Obj::Process, src: Src::Info("MaxSessRate") },
    Family { name: "haproxy_process_idle_time_percent", ty: "gauge", help: "Percentage of last second spent waiting in the current worker thread", obj: Obj::Process, src: Src::Info("Idle_pct") },
    Family { name: "haproxy_process_stopping", ty: "gauge", help: "1 if the worker process is currently stopping, otherwise zero", obj: Obj::Process, src: Src::Info("Stopping") },
    Family { name: "haproxy_process_jobs", ty: "gauge", help: "Current number of active jobs on the current worker process (frontend connections, master connections, listeners)", obj: Obj::Process, src: Src::Info("Jobs") },
    Family { name: "haproxy_process_unstoppable_jobs", ty: "gauge", help: "Current number of unstoppable jobs on the current worker process (master connections)", obj: Obj::Process, src: Src::Info("Unstoppable Jobs") },
    Family { name: "haproxy_process_listeners", ty: "gauge", help: "Current number of active listeners on the current worker process", obj: Obj::Process, src: Src::Info("Listeners") },
    Family { name: "haproxy_process_build_info", ty: "gauge", help: "Build info", obj: Obj::Process, src: Src::BuildInfo },
    Family { name: "haproxy_process_start_time_seconds", ty: "gauge", help: "Start time in seconds", obj: Obj::Process, src: Src::Info("Start_time_sec") },
    Family { name: "haproxy_frontend_current_sessions", ty: "gauge", help: "Number of current sessions on the frontend, backend or server", obj: Obj::Frontend, src: Src::Field("scur") },
    Family { name: "haproxy_frontend_max_sessions", ty: "gauge", help: "Highest value of current sessions encountered since process started", obj: Obj::Frontend, src: Src::Field("smax") },
    Family { name: "haproxy_frontend_limit_sessions", ty: "gauge", help: "Frontend/listener/server's maxconn, backend's fullconn", obj: Obj::Frontend, src: Src::Field("slim") },
    Family { name: "haproxy_frontend_sessions_total", ty: "counter", help: "Total number of sessions since process started", obj: Obj::Frontend, src: Src::Field("stot") },
    Family { name: "haproxy_frontend_bytes_in_total", ty: "counter", help: "Total number of request bytes since process started", obj: Obj::Frontend, src: Src::Field("bin") },
    Family { name: "haproxy_frontend_bytes_out_total", ty: "counter", help: "Total number of response bytes since process started", obj: Obj::Frontend, src: Src::Field("bout") },
    Family { name: "haproxy_frontend_requests_denied_total", ty: "counter", help: "Total number of denied requests since process started", obj: Obj::Frontend, src: Src::Field("dreq") },
    Family { name: "haproxy_frontend_responses_denied_total", ty: "counter", help: "Total number of denied responses since process started", obj: Obj::Frontend, src: Src::Field("dresp") },
    Family { name: "haproxy_frontend_request_errors_total", ty: "counter", help: "Total number of invalid requests since process started", obj: Obj::Frontend, src: Src::Field("ereq") },
    Family { name: "haproxy_frontend_status", ty: "gauge", help: "Current status of the service, per state label value.", obj: Obj::Frontend, src: Src::Status },
    Family { name: "haproxy_frontend_max_session_rate", ty: "gauge", help: "Highest value of sessions per second observed since the worker process started", obj: Obj::Frontend, src: Src::Field("rate_max") },
    Family { name: "haproxy_frontend_limit_session_rate", ty: "gauge", help: "Limit on the number of sessions accepted in a second (frontend only, 'rate-limit sessions' setting)", obj: Obj::Frontend, src: Src::Field("rate_lim") },
    Family { name: "haproxy_frontend_http_responses_total", ty: "counter", help: "Total number of HTTP responses with status 100-199 returned by this object since the worker process started", obj: Obj::Frontend, src: Src::Responses },
    Family { name: "haproxy_frontend_http_requests_rate_max", ty: "gauge", help: "Highest value of http requests observed since the worker process started", obj: Obj::Frontend, src: Src::Field("req_rate_max") },
    Family { name: "haproxy_frontend_http_requests_total", ty: "counter", help: "Total number of HTTP requests processed by this object since the worker process started", obj: Obj::Frontend, src: Src::Field("req_tot") },
    Family { name: "haproxy_frontend_connections_rate_max", ty: "gauge", help: "Highest value of connections per second observed since the worker process started", obj: Obj::Frontend, src: Src::Field("conn_rate_max") },
    Family { name: "haproxy_frontend_connections_total", ty: "counter", help: "Total number of new connections accepted on this frontend since the worker process started", obj: Obj::Frontend, src: Src::Field("conn_tot") },
    Family { name: "haproxy_frontend_intercepted_requests_total", ty: "counter", help: "Total number of HTTP requests intercepted on the frontend (redirects/stats/services) since the worker process started", obj: Obj::Frontend, src: Src::Field("intercepted") },
    Family { name: "haproxy_frontend_denied_connections_total", ty: "counter", help: "Total number of incoming connections blocked on a listener/frontend by a tcp-request connection rule since the worker process started", obj: Obj::Frontend, src: Src::Field("dcon") },
    Family { name: "haproxy_frontend_denied_sessions_total", ty: "counter", help: "Total number of incoming sessions blocked on a listener/frontend by a tcp-request connection rule since the worker process started", obj: Obj::Frontend, src: Src::Field("dses") },
    Family { name: "haproxy_frontend_failed_header_rewriting_total", ty: "counter", help: "Total number of failed HTTP header rewrites since the worker process started", obj: Obj::Frontend, src: Src::Field("wrew") },
    Family { name: "haproxy_frontend_internal_errors_total", ty: "counter", help: "Total number of internal errors since process started", obj: Obj::Frontend, src: Src::Field("eint") },
    Family { name: "haproxy_backend_current_queue", ty: "gauge", help: "Number of current queued connections", obj: Obj::Backend, src: Src::Field("qcur") },
    Family { name: "haproxy_backend_max_queue", ty: "gauge", help: "Highest value of queued connections encountered since process started", obj: Obj::Backend, src: Src::Field("qmax") },
    Family { name: "haproxy_backend_current_sessions", ty: "gauge", help: "Number of current sessions on the frontend, backend or server", obj: Obj::Backend, src: Src::Field("scur") },
    Family { name: "haproxy_backend_max_sessions", ty: "gauge", help: "Highest value of current sessions encountered since process started", obj: Obj::Backend, src: Src::Field("smax") },
    Family { name: "haproxy_backend_limit_sessions", ty: "gauge", help: "Frontend/listener/server's maxconn, backend's fullconn", obj: Obj::Backend, src: Src::Field("slim") },
    Family { name: "haproxy_backend_sessions_total", ty: "counter", help: "Total number of sessions since process started", obj: Obj::Backend, src: Src::Field("stot") },
    Family { name: "haproxy_backend_bytes_in_total", ty: "counter", help: "Total number of request bytes since process started", obj: Obj::Backend, src: Src::Field("bin") },
    Family { name: "haproxy_backend_bytes_out_total", ty: "counter", help: "Total number of response bytes since process started", obj: Obj::Backend, src: Src::Field("bout") },
    Family { name: "haproxy_backend_requests_denied_total", ty: "counter", help: "Total number of denied requests since process started", obj: Obj::Backend, src: Src::Field("dreq") },
    Family { name: "haproxy_backend_responses_denied_total", ty: "counter", help: "Total number of denied responses since process started", obj: Obj::Backend, src: Src::Field("dresp") },
    Family { name: "haproxy_backend_connection_errors_total", ty: "counter", help: "Total number of failed connections to server since the worker process started", obj: Obj::Backend, src: Src::Field("econ") },
    Family { name: "haproxy_backend_response_errors_total", ty: "counter", help: "Total number of invalid responses since the worker process started", obj: Obj::Backend, src: Src::Field("eresp") },
    Family { name: "haproxy_backend_retry_warnings_total", ty: "counter", help: "Total number of server connection retries since the worker process started", obj: Obj::Backend, src: Src::Field("wretr") },
    Family { name: "haproxy_backend_redispatch_warnings_total", ty: "counter", help: "Total number of server redispatches due to connection failures since the worker process started", obj: Obj::Backend, src: Src::Field("wredis") },
    Family { name: "haproxy_backend_status", ty: "gauge", help: "Current status of the service, per state label value.", obj: Obj::Backend, src: Src::Status },
    Family { name: "haproxy_backend_weight", ty: "gauge", help: "Server's effective weight, or sum of active servers' effective weights for a backend", obj: Obj::Backend, src: Src::Field("weight") },
    Family { name: "haproxy_backend_active_servers", ty: "gauge", help: "Total number of active UP servers with a non-zero weight", obj: Obj::Backend, src: Src::Field("act") },
    Family { name: "haproxy_backend_backup_servers", ty: "gauge", help: "Total number of backup UP servers with a non-zero weight", obj: Obj::Backend, src: Src::Field("bck") },
    Family { name: "haproxy_backend_check_up_down_total", ty: "counter", help: "Total number of failed checks causing UP to DOWN server transitions, per server/backend, since the worker process started", obj: Obj::Backend, src: Src::Field("chkdown") },
    Family { name: "haproxy_backend_check_last_change_seconds", ty: "gauge", help: "How long ago the last server state changed, in seconds", obj: Obj::Backend, src: Src::Field("lastchg") },
    Family { name: "haproxy_backend_downtime_seconds_total", ty: "counter", help: "Total time spent in DOWN state, for server or backend", obj: Obj::Backend, src: Src::Field("downtime") },
    Family { name: "haproxy_backend_loadbalanced_total", ty: "counter", help: "Total number of requests routed by load balancing since the worker process started (ignores queue pop and stickiness)", obj: Obj::Backend, src: Src::Field("lbtot") },
    Family { name: "haproxy_backend_max_session_rate", ty: "gauge", help: "Highest value of sessions per second observed since the worker process started", obj: Obj::Backend, src: Src::Field("rate_max") },
    Family { name: "haproxy_backend_http_responses_total", ty: "counter", help: "Total number of HTTP responses with status 100-199 returned by this object since the worker process started", obj: Obj::Backend, src: Src::Responses },
    Family { name: "haproxy_backend_http_requests_total", ty: "counter", help: "Total number of HTTP requests processed by this object since the worker process started", obj: Obj::Backend, src: Src::Field("req_tot") },
    Family { name: "haproxy_backend_client_aborts_total", ty: "counter", help: "Total number of requests or connections aborted by the client since the worker process started", obj: Obj::Backend, src: Src::Field("cli_abrt") },
    Family { name: "haproxy_backend_server_aborts_total", ty: "counter", help: "Total number of requests or connections aborted by the server since the worker process started", obj: Obj::Backend, src: Src::Field("srv_abrt") },
    Family { name: "haproxy_backend_last_session_seconds", ty: "gauge", help: "How long ago some traffic was seen on this object on this worker process, in seconds", obj: Obj::Backend, src: Src::Field("lastsess") },
    Family { name: "haproxy_backend_queue_time_average_seconds", ty: "gauge", help: "Avg. queue time for last 1024 successful connections.", obj: Obj::Backend, src: Src::Millis("qtime") },
    Family { name: "haproxy_backend_connect_time_average_seconds", ty: "gauge", help: "Avg. connect time for last 1024 successful connections.", obj: Obj::Backend, src: Src::Millis("ctime") },
    Family { name: "haproxy_backend_response_time_average_seconds", ty: "gauge", help: "Avg. response time for last 1024 successful connections.", obj: Obj::Backend, src: Src::Millis("rtime") },
    Family { name: "haproxy_backend_total_time_average_seconds", ty: "gauge", help: "Avg. total time for last 1024 successful connections.", obj: Obj::Backend, src: Src::Millis("ttime") },
    Family { name: "haproxy_backend_max_queue_time_seconds", ty: "gauge", help: "Maximum observed time spent in the queue", obj: Obj::Backend, src: Src::Millis("qtime_max") },
    Family { name: "haproxy_backend_max_connect_time_seconds", ty: "gauge", help: "Maximum observed time spent waiting for a connection to complete", obj: Obj::Backend, src: Src::Millis("ctime_max") },
    Family { name: "haproxy_backend_max_response_time_seconds", ty: "gauge", help: "Maximum observed time spent waiting for a server response", obj: Obj::Backend, src: Src::Millis("rtime_max") },
    Family { name: "haproxy_backend_max_total_time_seconds", ty: "gauge", help: "Maximum observed total request+response time (request+queue+connect+response+processing)", obj: Obj::Backend, src: Src::Millis("ttime_max") },
    Family { name: "haproxy_backend_failed_header_rewriting_total", ty: "counter", help: "Total number of failed HTTP header rewrites since the worker process started", obj: Obj::Backend, src: Src::Field("wrew") },
    Family { name: "haproxy_backend_connection_attempts_total", ty: "counter", help: "Total number of outgoing connection attempts on this backend/server since the worker process started", obj: Obj::Backend, src: Src::Field("connect") },
    Family { name: "haproxy_backend_connection_reuses_total", ty: "counter", help: "Total number of reused connection on this backend/server since the worker process started", obj: Obj::Backend, src: Src::Field("reuse") },
    Family { name: "haproxy_backend_internal_errors_total", ty: "counter", help: "Total number of internal errors since process started", obj: Obj::Backend, src: Src::Field("eint") },
    Family { name: "haproxy_backend_uweight", ty: "gauge", help: "Server's user weight, or sum of active servers' user weights for a backend", obj: Obj::Backend, src: Src::Field("uweight") },
    Family { name: "haproxy_server_current_queue", ty: "gauge", help: "Number of current queued connections", obj: Obj::Server, src: Src::Field("qcur") },
    Family { name: "haproxy_server_max_queue", ty: "gauge", help: "Highest value of queued connections encountered since process started", obj: Obj::Server, src: Src::Field("qmax") },
    Family { name: "haproxy_server_current_sessions", ty: "gauge", help: "Number of current sessions on the frontend, backend or server", obj: Obj::Server, src: Src::Field("scur") },
    Family { name: "haproxy_server_max_sessions", ty: "gauge", help: "Highest value of current sessions encountered since process started", obj: Obj::Server, src: Src::Field("smax") },
    Family { name: "haproxy_server_limit_sessions", ty: "gauge", help: "Frontend/listener/server's maxconn, backend's fullconn", obj: Obj::Server, src: Src::Field("slim") },
    Family { name: "haproxy_server_sessions_total", ty: "counter", help: "Total number of sessions since process started", obj: Obj::Server, src: Src::Field("stot") },
    Family { name: "haproxy_server_bytes_in_total", ty: "counter", help: "Total number of request bytes since process started", obj: Obj::Server, src: Src::Field("bin") },
    Family { name: "haproxy_server_bytes_out_total", ty: "counter", help: "Total number of response bytes since process started", obj: Obj::Server, src: Src::Field("bout") },
    Family { name: "haproxy_server_responses_denied_total", ty: "counter", help: "Total number of denied responses since process started", obj: Obj::Server, src: Src::Field("dresp") },
    Family { name: "haproxy_server_connection_errors_total", ty: "counter", help: "Total number of failed connections to server since the worker process started", obj: Obj::Server, src: Src::Field("econ") },
    Family { name: "haproxy_server_response_errors_total", ty: "counter", help: "Total number of invalid responses since the worker process started", obj: Obj::Server, src: Src::Field("eresp") },
    Family { name: "haproxy_server_retry_warnings_total", ty: "counter", help: "Total number of server connection retries since the worker process started", obj: Obj::Server, src: Src::Field("wretr") },
    Family { name: "haproxy_server_redispatch_warnings_total", ty: "counter", help: "Total number of server redispatches due to connection failures since the worker process started", obj: Obj::Server, src: Src::Field("wredis") },
    Family { name: "haproxy_server_status", ty: "gauge", help: "Current status of the service, per state label value.", obj: Obj::Server, src: Src::Status },
    Family { name: "haproxy_server_weight", ty: "gauge", help: "Server's effective weight, or sum of active servers' effective weights for a backend", obj: Obj::Server, src: Src::Field("weight") },
    Family { name: "haproxy_server_check_failures_total", ty: "counter", help: "Total number of failed individual health checks per server/backend, since the worker process started", obj: Obj::Server, src: Src::Field("chkfail") },
    Family { name: "haproxy_server_check_up_down_total", ty: "counter", help: "Total number of failed checks causing UP to DOWN server transitions, per server/backend, since the worker process started", obj: Obj::Server, src: Src::Field("chkdown") },
    Family { name: "haproxy_server_check_last_change_seconds", ty: "gauge", help: "How long ago the last server state changed, in seconds", obj: Obj::Server, src: Src::Field("lastchg") },
    Family { name: "haproxy_server_downtime_seconds_total", ty: "counter", help: "Total time spent in DOWN state, for server or backend", obj: Obj::Server, src: Src::Field("downtime") },
    Family { name: "haproxy_server_loadbalanced_total", ty: "counter", help: "Total number of requests routed by load balancing since the worker process started (ignores queue pop and stickiness)", obj: Obj::Server, src: Src::Field("lbtot") },
    Family { name: "haproxy_server_max_session_rate", ty: "gauge", help: "Highest value of sessions per second observed since the worker process started", obj: Obj::Server, src: Src::Field("rate_max") },
    Family { name: "haproxy_server_check_status", ty: "gauge", help: "Status of last health check, per state label value.", obj: Obj::Server, src: Src::CheckStatus },
    Family { name: "haproxy_server_check_code", ty: "gauge", help: "layer5-7 code, if available of the last health check.", obj: Obj::Server, src: Src::Field("check_code") },
    Family { name: "haproxy_server_check_duration_seconds", ty: "gauge", help: "Total duration of the latest server health check, in seconds.", obj: Obj::Server, src: Src::Millis("check_duration") },
    Family { name: "haproxy_server_http_responses_total", ty: "counter", help: "Total number of HTTP responses with status 100-199 returned by this object since the worker process started", obj: Obj::Server, src: Src::Responses },
    Family { name: "haproxy_server_client_aborts_total", ty: "counter", help: "Total number of requests or connections aborted by the client since the worker process started", obj: Obj::Server, src: Src::Field("cli_abrt") },
    Family { name: "haproxy_server_server_aborts_total", ty: "counter", help: "Total number of requests or connections aborted by the server since the worker process started", obj: Obj::Server, src: Src::Field("srv_abrt") },
    Family { name: "haproxy_server_last_session_seconds", ty: "gauge", help: "How long ago some traffic was seen on this object on this worker process, in seconds", obj: Obj::Server, src: Src::Field("lastsess") },
    Family { name: "haproxy_server_queue_time_average_seconds", ty: "gauge", help: "Avg. queue time for last 1024 successful connections.", obj: Obj::Server, src: Src::Millis("qtime") },
    Family { name: "haproxy_server_connect_time_average_seconds", ty: "gauge", help: "Avg. connect time for last 1024 successful connections.", obj: Obj::Server, src: Src::Millis("ctime") },
    Family { name: "haproxy_server_response_time_average_seconds", ty: "gauge", help: "Avg. response time for last 1024 successful connections.", obj: Obj::Server, src: Src::Millis("rtime") },
    Family { name: "haproxy_server_total_time_average_seconds", ty: "gauge", help: "Avg. total time for last 1024 successful connections.", obj: Obj::Server, src: Src::Millis("ttime") },
    Family { name: "haproxy_server_max_queue_time_seconds", ty: "gauge", help: "Maximum observed time spent in the queue", obj: Obj::Server, src: Src::Millis("qtime_max") },
    Family { name: "haproxy_server_max_connect_time_seconds", ty: "gauge", help: "Maximum observed time spent waiting for a connection to complete", obj: Obj::Server, src: Src::Millis("ctime_max") },
    Family { name: "haproxy_server_max_response_time_seconds", ty: "gauge", help: "Maximum observed time spent waiting for a server response", obj: Obj::Server, src: Src::Millis("rtime_max") },
    Family { name: "haproxy_server_max_total_time_seconds", ty: "gauge", help: "Maximum observed total request+response time (request+queue+connect+response+processing)", obj: Obj::Server, src: Src::Millis("ttime_max") },
    Family { name: "haproxy_server_failed_header_rewriting_total", ty: "counter", help: "Total number of failed HTTP header rewrites since the worker process started", obj: Obj::Server, src: Src::Field("wrew") },
    Family { name: "haproxy_server_connection_attempts_total", ty: "counter", help: "Total number of outgoing connection attempts on this backend/server since the worker process started", obj: Obj::Server, src: Src::Field("connect") },
    Family { name: "haproxy_server_connection_reuses_total", ty: "counter", help: "Total number of reused connection on this backend/server since the worker process started", obj: Obj::Server, src: Src::Field("reuse") },
    Family { name: "haproxy_server_idle_connections_current", ty: "gauge", help: "Current number of idle connections available for reuse on this server", obj: Obj::Server, src: Src::Field("srv_icur") },
    Family { name: "haproxy_server_internal_errors_total", ty: "counter", help: "Total number of internal errors since process started", obj: Obj::Server, src: Src::Field("eint") },
    Family { name: "haproxy_server_unsafe_idle_connections_current", ty: "gauge", help: "Current number of unsafe idle connections", obj: Obj::Server, src: Src::Field("idle_conn_cur") },
    Family { name: "haproxy_server_safe_idle_connections_current", ty: "gauge", help: "Current number of safe idle connections", obj: Obj::Server, src: Src::Field("safe_conn_cur") },
    Family { name: "haproxy_server_used_connections_current", ty: "gauge", help: "Current number of connections in use", obj: Obj::Server, src: Src::Field("used_conn_cur") },
    Family { name: "haproxy_server_need_connections_current", ty: "gauge", help: "Estimated needed number of connections", obj: Obj::Server, src: Src::Field("need_conn_est") },
    Family { name: "haproxy_server_uweight", ty: "gauge", help: "Server's user weight, or sum of active servers' user weights for a backend", obj: Obj::Server, src: Src::Field("uweight") },
];

/// HAProxy's state labels of `haproxy_*_status`.
const SERVICE_STATES: [&str; 2] = ["DOWN", "UP"];
const SERVER_STATES: [&str; 5] = ["DOWN", "UP", "MAINT", "DRAIN", "NOLB"];
/// HAProxy's check results, in its order.
const CHECK_STATES: [&str; 16] = [
    "HANA", "SOCKERR", "L4OK", "L4TOUT", "L4CON", "L6OK", "L6TOUT", "L6RSP", "L7TOUT", "L7RSP",
    "L7OK", "L7OKC", "L7STS", "PROCERR", "PROCTOUT", "PROCOK",
];
/// The `code` labels of `http_responses_total`, for `stat::HRSP`'s fields
/// in the same order.
const CODES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// A row's labels and the values the families read (only those, so a
/// scrape of many servers holds no full `show stat` rows).
struct Sampled {
    kind: Kind,
    labels: String,
    values: Vec<(&'static str, String)>,
}

impl Sampled {
    fn of(row: &Row) -> Sampled {
        let labels = match row.kind() {
            Kind::Server => format!(
                "proxy=\"{}\",server=\"{}\"",
                label(row.value("pxname")),
                label(row.value("svname"))
            ),
            _ => format!("proxy=\"{}\"", label(row.value("pxname"))),
        };
        let values = row_fields()
            .iter()
            .map(|&n| (n, row.value(n)))
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| (n, v.to_owned()))
            .collect();
        Sampled {
            kind: row.kind(),
            labels,
            values,
        }
    }

    fn get(&self, field: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == field)
            .map(|(_, v)| v.as_str())
    }
}

/// The `show stat` fields the families read, each once (computed once:
/// a scrape samples every server's row).
fn row_fields() -> &'static [&'static str] {
    static FIELDS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        let mut all: Vec<&'static str> = Vec::new();
        let mut add = |n: &'static str| {
            if !all.contains(&n) {
                all.push(n);
            }
        };
        for f in FAMILIES {
            match f.src {
                Src::Field(n) | Src::Millis(n) => add(n),
                Src::Status => add("status"),
                Src::CheckStatus => add("check_status"),
                Src::Responses => stat::HRSP.iter().for_each(|&n| add(n)),
                Src::Info(_) | Src::BuildInfo => {}
            }
        }
        all
    })
}

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The state label a `status` word counts for.
fn state_of(kind: Kind, status: &str) -> &'static str {
    match (kind, status.split(' ').next().unwrap_or("")) {
        (_, "DOWN") => "DOWN",
        (Kind::Server, "MAINT") => "MAINT",
        (Kind::Server, "DRAIN") => "DRAIN",
        (Kind::Server, "NOLB") => "NOLB",
        (Kind::Server, _) => "UP",
        (_, "MAINT") => "DOWN",
        _ => "UP",
    }
}

pub fn render(rt: &Runtime, shm: &Shm) -> String {
    let mut rows = Vec::new();
    stat::for_each_row(&Source { config: rt, shm }, |row| {
        rows.push(Sampled::of(row))
    });
    let info = info::fields(&InfoSource::of_shm(rt, shm, rt.generation));
    let mut out = String::with_capacity(16 * 1024);
    let mut samples = String::new();
    for f in FAMILIES {
        samples.clear();
        family_samples(&mut samples, f, &rows, &info);
        if !samples.is_empty() {
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} {}",
                f.name, f.help, f.name, f.ty
            );
            out.push_str(&samples);
        }
    }
    out
}

fn family_samples(out: &mut String, f: &Family, rows: &[Sampled], info: &[info::Info]) {
    let name = f.name;
    let kind = match f.obj {
        Obj::Process => {
            match f.src {
                Src::Info(field) => {
                    if let Some(i) = info.iter().find(|i| i.name == field) {
                        let _ = writeln!(out, "{name} {}", i.value);
                    }
                }
                Src::BuildInfo => {
                    let _ = writeln!(out, "{name}{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
                }
                _ => {}
            }
            return;
        }
        Obj::Frontend => Kind::Frontend,
        Obj::Backend => Kind::Backend,
        Obj::Server => Kind::Server,
    };
    let of_kind = || rows.iter().filter(move |r| r.kind == kind);
    match f.src {
        Src::Field(field) => {
            for r in of_kind() {
                if let Some(v) = r.get(field) {
                    let _ = writeln!(out, "{name}{{{}}} {v}", r.labels);
                }
            }
        }
        Src::Millis(field) => {
            for r in of_kind() {
                if let Some(ms) = r.get(field).and_then(|v| v.parse::<f64>().ok()) {
                    let _ = writeln!(out, "{name}{{{}}} {:.6}", r.labels, ms / 1000.0);
                }
            }
        }
        Src::Status => {
            let states: &[&str] = if kind == Kind::Server {
                &SERVER_STATES
            } else {
                &SERVICE_STATES
            };
            for r in of_kind() {
                let Some(status) = r.get("status") else {
                    continue;
                };
                let now = state_of(kind, status);
                for s in states {
                    let _ = writeln!(
                        out,
                        "{name}{{{},state=\"{s}\"}} {}",
                        r.labels,
                        u8::from(*s == now)
                    );
                }
            }
        }
        Src::CheckStatus => {
            for r in of_kind() {
                let Some(check) = r.get("check_status") else {
                    continue;
                };
                for s in CHECK_STATES {
                    let _ = writeln!(
                        out,
                        "{name}{{{},state=\"{s}\"}} {}",
                        r.labels,
                        u8::from(s == check)
                    );
                }
            }
        }
        Src::Responses => {
            for (code, field) in CODES.iter().zip(stat::HRSP) {
                for r in of_kind() {
                    if let Some(v) = r.get(field) {
                        let _ = writeln!(out, "{name}{{{},code=\"{code}\"}} {v}", r.labels);
                    }
                }
            }
        }
        Src::Info(_) | Src::BuildInfo => {}
    }
}
