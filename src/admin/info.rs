//! `show info [typed|json] [desc]` and `show version`, with HAProxy 2.6's
//! field names, positions, tags and descriptions for the fields forklb has
//! (taken from HAProxy's own `show info typed desc`), so scrapers that read
//! Idle_pct, ConnRate, SessRate, Stopping or Jobs by name work unchanged.
//! Fields HAProxy has and forklb has no data for are left out, not faked.

use super::typed;
use super::view::View;
use std::fmt::Write;

/// How `show info` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoFormat {
    /// `Name: value` lines.
    Plain,
    Typed {
        desc: bool,
    },
    Json,
}

impl InfoFormat {
    /// Parses the words after `show info`; an unknown word is an error
    /// (HAProxy ignores it). `float` is accepted and changes nothing:
    /// every value here is an integer.
    pub fn parse(args: &[&str]) -> Result<InfoFormat, String> {
        let (mut typed, mut json, mut desc) = (false, false, false);
        for word in args {
            match *word {
                "typed" => (typed, json) = (true, false),
                "json" => (typed, json) = (false, true),
                "desc" => desc = true,
                "float" => {}
                other => {
                    return Err(format!(
                        "Unknown argument '{other}' to show info. \
                         Usage: show info [desc|json|typed|float]*\n"
                    ))
                }
            }
        }
        Ok(if json {
            InfoFormat::Json
        } else if typed {
            InfoFormat::Typed { desc }
        } else {
            InfoFormat::Plain
        })
    }
}

/// One line of `show info`: HAProxy's position, name, `TAGS:type` and
/// description, and the value.
pub struct Info {
    pub pos: usize,
    pub name: &'static str,
    pub tags: &'static str,
    pub desc: &'static str,
    pub value: String,
}

/// What `show info` reports from: the master's view (`View`), or what a
/// worker reads of it in shared memory (`metrics: haproxy`).
pub struct InfoSource<'a> {
    pub config: &'a crate::config::Config,
    pub workers: usize,
    pub pid: u32,
    pub uptime_secs: u64,
    pub totals: crate::shm::WorkerTotals,
    pub rates: crate::master::rates::RateView,
    pub stopping: bool,
    pub started_unix: u64,
    pub generation: u64,
}

impl<'a> InfoSource<'a> {
    pub fn of_view(v: &'a View) -> InfoSource<'a> {
        InfoSource {
            config: v.config,
            workers: v.workers.len(),
            pid: v.pid,
            uptime_secs: v.uptime_secs,
            totals: v.totals,
            rates: v.rates,
            stopping: v.stopping,
            started_unix: v.started_unix,
            generation: v.generation,
        }
    }

    /// In a worker: this generation's counters plus what the master
    /// published (earlier generations, rates, its pid and start).
    pub fn of_shm(
        config: &'a crate::config::Config,
        shm: &crate::shm::Shm,
        generation: u64,
    ) -> InfoSource<'a> {
        let i = shm.instance().read();
        let mut totals = shm.worker_totals();
        totals.conns_total += i.earlier_conns;
        totals.requests += i.earlier_requests;
        InfoSource {
            config,
            workers: shm.worker_count(),
            pid: i.master_pid,
            uptime_secs: crate::shm::unix_secs().saturating_sub(i.started_unix),
            totals,
            rates: crate::master::rates::RateView {
                conn_rate: i.conn_rate,
                max_conn_rate: i.max_conn_rate,
                req_rate: i.req_rate,
                max_req_rate: i.max_req_rate,
                idle_pct: i.idle_pct,
            },
            stopping: i.stopping,
            started_unix: i.started_unix,
            generation,
        }
    }
}

pub fn fields(v: &InfoSource) -> Vec<Info> {
    let t = v.totals;
    let r = v.rates;
    let up = v.uptime_secs;
    let workers = v.workers;
    let maxconn = v.config.worker_connections * workers.max(1);
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(0, |(soft, _)| soft);
    let listeners: usize = v.config.listeners.iter().map(|l| l.addrs.len()).sum();
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let f = |pos, name, tags, desc, value: String| Info {
        pos,
        name,
        tags,
        desc,
        value,
    };
    vec![
        f(0, "Name", "POS:str", "Product name", "forklb".into()),
        f(1, "Version", "POS:str", "Product version", env!("CARGO_PKG_VERSION").into()),
        f(2, "Release_date", "POS:str", "Date of latest source code update", "-".into()),
        f(3, "Nbthread", "CGS:u32", "Number of started threads (global.nbthread)", "1".into()),
        f(4, "Nbproc", "CGS:u32", "Number of started worker processes", workers.to_string()),
        f(5, "Process_num", "KGP:u32", "Relative worker process number (1)", "1".into()),
        f(6, "Pid", "SGP:u32", "This master process identifier for the system", v.pid.to_string()),
        f(
            7,
            "Uptime",
            "MDP:str",
            "How long ago this worker process was started (days+hours+minutes+seconds)",
            format!(
                "{}d {}h{:02}m{:02}s",
                up / 86_400,
                (up % 86_400) / 3600,
                (up % 3600) / 60,
                up % 60
            ),
        ),
        f(
            8,
            "Uptime_sec",
            "MDP:u32",
            "How long ago this worker process was started (seconds)",
            up.to_string(),
        ),
        f(
            13,
            "Ulimit-n",
            "CLP:u32",
            "Hard limit on the number of per-process file descriptors",
            nofile.to_string(),
        ),
        f(
            14,
            "Maxsock",
            "CLP:u32",
            "Hard limit on the number of per-process sockets",
            nofile.to_string(),
        ),
        f(
            15,
            "Maxconn",
            "CLP:u32",
            "Hard limit on the number of per-process connections (configured or imposed by Ulimit-n)",
            maxconn.to_string(),
        ),
        f(
            16,
            "Hard_maxconn",
            "CLP:u32",
            "Hard limit on the number of per-process connections (imposed by Memmax_MB or Ulimit-n)",
            maxconn.to_string(),
        ),
        f(
            17,
            "CurrConns",
            "MGP:u32",
            "Current number of connections on this worker process",
            t.conns_current.to_string(),
        ),
        f(
            18,
            "CumConns",
            "MCP:u32",
            "Total number of connections on this worker process since started",
            t.conns_total.to_string(),
        ),
        f(
            19,
            "CumReq",
            "MCP:u32",
            "Total number of requests on this worker process since started",
            t.requests.to_string(),
        ),
        f(
            26,
            "ConnRate",
            "MRP:u32",
            "Number of front connections created on this worker process over the last second",
            r.conn_rate.to_string(),
        ),
        f(
            27,
            "ConnRateLimit",
            "CLP:u32",
            "Hard limit for ConnRate (global.maxconnrate)",
            "0".into(),
        ),
        f(
            28,
            "MaxConnRate",
            "MMP:u32",
            "Highest ConnRate reached on this worker process since started (in connections per second)",
            r.max_conn_rate.to_string(),
        ),
        f(
            29,
            "SessRate",
            "MRP:u32",
            "Number of sessions created on this worker process over the last second",
            r.conn_rate.to_string(),
        ),
        f(
            30,
            "SessRateLimit",
            "CLP:u32",
            "Hard limit for SessRate (global.maxsessrate)",
            "0".into(),
        ),
        f(
            31,
            "MaxSessRate",
            "MRP:u32",
            "Highest SessRate reached on this worker process since started (in sessions per second)",
            r.max_conn_rate.to_string(),
        ),
        f(
            49,
            "Idle_pct",
            "MaP:u32",
            "Percentage of last second spent waiting in the current worker thread",
            r.idle_pct.to_string(),
        ),
        f(50, "node", "COS:str", "Node name (global.node)", node),
        f(
            52,
            "Stopping",
            "MGP:u32",
            "1 if the worker process is currently stopping, otherwise zero",
            u8::from(v.stopping).to_string(),
        ),
        f(
            53,
            "Jobs",
            "MGP:u32",
            "Current number of active jobs on the current worker process (frontend connections, master connections, listeners)",
            (t.conns_current + listeners as u64).to_string(),
        ),
        f(
            54,
            "Unstoppable Jobs",
            "MGP:u32",
            "Current number of unstoppable jobs on the current worker process (master connections)",
            "0".into(),
        ),
        f(
            55,
            "Listeners",
            "MGP:u32",
            "Current number of active listeners on the current worker process",
            listeners.to_string(),
        ),
        f(70, "Start_time_sec", "MDP:u32", "Start time in seconds", v.started_unix.to_string()),
        // forklb's own, after HAProxy's fields.
        f(
            100,
            "Generation",
            "SGP:u32",
            "Configuration generation: 1 at start, one more per reload",
            v.generation.to_string(),
        ),
    ]
}

pub fn show_info(v: &View, format: InfoFormat) -> String {
    let mut out = String::new();
    let all = fields(&InfoSource::of_view(v));
    match format {
        InfoFormat::Plain => {
            for i in &all {
                let _ = writeln!(out, "{}: {}", i.name, i.value);
            }
        }
        InfoFormat::Typed { desc } => {
            for i in &all {
                let _ = write!(out, "{}.{}.1:{}:{}", i.pos, i.name, i.tags, i.value);
                if desc {
                    let _ = write!(out, ":\"{}\"", i.desc);
                }
                out.push('\n');
            }
        }
        InfoFormat::Json => {
            out.push('[');
            for (n, i) in all.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                let (tags, ty) = i.tags.split_once(':').unwrap_or((i.tags, "str"));
                out.push('{');
                typed::json_field(&mut out, i.pos, i.name, tags, ty, &i.value);
            }
            out.push_str("]\n");
        }
    }
    out
}

/// `show version`: the version alone, as HAProxy prints its own.
pub fn show_version() -> String {
    format!("{}\n", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_like_haproxys_words() {
        assert_eq!(InfoFormat::parse(&[]), Ok(InfoFormat::Plain));
        assert_eq!(
            InfoFormat::parse(&["typed", "desc"]),
            Ok(InfoFormat::Typed { desc: true })
        );
        assert_eq!(InfoFormat::parse(&["desc", "json"]), Ok(InfoFormat::Json));
        assert_eq!(InfoFormat::parse(&["float"]), Ok(InfoFormat::Plain));
        let e = InfoFormat::parse(&["fancy"]).unwrap_err();
        assert!(
            e.starts_with("Unknown argument 'fancy' to show info."),
            "{e}"
        );
    }
}
