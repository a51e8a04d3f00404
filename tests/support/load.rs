//! Client load: continuous [`Load`] with [`Check`]s, and [`concurrently`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::*;

/// Judges one response of the load: `Err` with a reason makes it a failure.
pub type Check = Arc<dyn Fn(&str, &Response) -> Result<(), String> + Send + Sync>;

/// A check that wants status 200.
pub fn check_status_200() -> Check {
    Arc::new(|_path: &str, r: &Response| {
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("status {} body {:?}", r.status, r.body_str()))
        }
    })
}

/// How [`Load`] loads the proxy.
#[derive(Clone)]
pub struct LoadOpts {
    /// Threads that each keep one keep-alive connection and send requests on
    /// it in a loop (opening a new one when the server closes it).
    pub keepalive_threads: usize,
    /// Threads that open a new connection for every request.
    pub fresh_threads: usize,
    /// Paths requested in turn.
    pub paths: Vec<String>,
    /// Pause of every thread between two requests (leaves CPU to the server).
    pub pause: Duration,
    /// Hard limit: the threads stop after this long even if nobody stops them.
    pub max_duration: Duration,
    pub check: Check,
}

impl Default for LoadOpts {
    fn default() -> Self {
        LoadOpts {
            keepalive_threads: 4,
            fresh_threads: 2,
            paths: vec!["/".to_owned()],
            pause: Duration::from_millis(2),
            max_duration: Duration::from_secs(60),
            check: check_status_200(),
        }
    }
}

struct LoadShared {
    stop: AtomicBool,
    started: Instant,
    ok: AtomicUsize,
    failed: AtomicUsize,
    retried: AtomicUsize,
    failures: Mutex<Vec<String>>,
    retries: Mutex<Vec<String>>,
    marks: Mutex<Vec<String>>,
}

impl LoadShared {
    fn ms(&self) -> u128 {
        self.started.elapsed().as_millis()
    }

    fn fail(&self, who: &str, path: &str, what: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut f = self.failures.lock().unwrap();
        if f.len() < 40 {
            f.push(format!("{:>6} ms {who} GET {path}: {what}", self.ms()));
        }
    }

    fn judge(&self, check: &Check, who: &str, path: &str, r: &Response) -> bool {
        match check(path, r) {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::SeqCst);
                true
            }
            Err(why) => {
                self.fail(who, path, why);
                false
            }
        }
    }
}

/// Continuous client load on 127.0.0.1:`port` from several threads, counting
/// failed requests. A request that fails on a reused keep-alive connection
/// (closed or reset by the server, not a timeout) and succeeds when retried
/// at once on a fresh connection is counted as `retried`, not as failed:
/// that race is inherent to HTTP keep-alive. Stops (and joins) on drop.
pub struct Load {
    shared: Arc<LoadShared>,
    threads: Vec<JoinHandle<()>>,
}

/// What a [`Load`] saw.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub ok: usize,
    pub failed: usize,
    pub retried: usize,
    pub failures: Vec<String>,
    pub retries: Vec<String>,
    pub marks: Vec<String>,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn summary(&self) -> String {
        format!(
            "{} ok, {} failed, {} retried on a fresh connection, in {:?}",
            self.ok, self.failed, self.retried, self.elapsed
        )
    }

    /// Details for failure messages: failures, retries and the test's marks.
    pub fn details(&self) -> String {
        format!(
            "{}\nfailures (first {}):\n  {}\nretried (first {}):\n  {}\nmarks:\n  {}",
            self.summary(),
            self.failures.len(),
            self.failures.join("\n  "),
            self.retries.len(),
            self.retries.join("\n  "),
            self.marks.join("\n  ")
        )
    }

    /// Panics unless no request failed and some succeeded.
    pub fn assert_no_failures(&self, what: &str, diagnostics: &str) {
        eprintln!("load during {what}: {}", self.summary());
        assert!(
            self.failed == 0 && self.ok > 0,
            "load during {what}: {}\n{diagnostics}",
            self.details()
        );
    }
}

impl Load {
    /// The default load (4 keep-alive threads, 2 new-connection threads,
    /// GET /, status 200 wanted).
    pub fn start(port: u16) -> Load {
        Load::start_with(port, LoadOpts::default())
    }

    pub fn start_with(port: u16, opts: LoadOpts) -> Load {
        let shared = Arc::new(LoadShared {
            stop: AtomicBool::new(false),
            started: Instant::now(),
            ok: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            retried: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
            retries: Mutex::new(Vec::new()),
            marks: Mutex::new(Vec::new()),
        });
        let mut threads = Vec::new();
        for t in 0..opts.keepalive_threads {
            let (s, o) = (shared.clone(), opts.clone());
            threads.push(thread::spawn(move || keepalive_client(port, t, &s, &o)));
        }
        for t in 0..opts.fresh_threads {
            let (s, o) = (shared.clone(), opts.clone());
            threads.push(thread::spawn(move || fresh_client(port, t, &s, &o)));
        }
        Load { shared, threads }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> usize {
        self.shared.ok.load(Ordering::SeqCst)
    }

    /// Failed requests so far.
    pub fn failed(&self) -> usize {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Waits until `n` more requests have succeeded (false on timeout).
    pub fn wait_progress(&self, n: usize, timeout: Duration) -> bool {
        let target = self.ok() + n;
        wait_until(timeout, || self.ok() >= target)
    }

    /// Like `wait_progress`, panicking on timeout.
    pub fn expect_progress(&self, n: usize, what: &str) {
        assert!(
            self.wait_progress(n, Duration::from_secs(5)),
            "load made no progress ({what}): {}",
            self.report().details()
        );
    }

    /// Notes an event (shown with the failures, in the same time base).
    pub fn mark(&self, what: &str) {
        let line = format!("{:>6} ms {what}", self.shared.ms());
        self.shared.marks.lock().unwrap().push(line);
    }

    /// The counts so far (the load keeps running).
    pub fn report(&self) -> LoadReport {
        let s = &self.shared;
        LoadReport {
            ok: s.ok.load(Ordering::SeqCst),
            failed: s.failed.load(Ordering::SeqCst),
            retried: s.retried.load(Ordering::SeqCst),
            failures: s.failures.lock().unwrap().clone(),
            retries: s.retries.lock().unwrap().clone(),
            marks: s.marks.lock().unwrap().clone(),
            elapsed: s.started.elapsed(),
        }
    }

    /// Stops the threads, waits for them and reports.
    pub fn stop(mut self) -> LoadReport {
        self.halt();
        self.report()
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

fn load_running(s: &LoadShared, o: &LoadOpts) -> bool {
    !s.stop.load(Ordering::SeqCst) && s.started.elapsed() < o.max_duration
}

fn keepalive_client(port: u16, t: usize, s: &LoadShared, o: &LoadOpts) {
    let who = format!("keep-alive#{t}");
    let mut conn: Option<Conn> = None;
    let mut i = t;
    while load_running(s, o) {
        let path = o.paths[i % o.paths.len()].as_str();
        i += 1;
        let reused = conn.is_some();
        let first = match conn.take() {
            Some(c) => Ok(c),
            None => Conn::open(port),
        }
        .and_then(|mut c| c.get(path).map(|r| (c, r)));
        match first {
            Ok((c, r)) => {
                s.judge(&o.check, &who, path, &r);
                if !r.closes() {
                    conn = Some(c);
                }
            }
            Err(e) if reused && !is_timeout(&e) => {
                // The keep-alive race: the server closed the connection as
                // the request went out. Retry once, now, on a new connection.
                match Conn::open(port).and_then(|mut c| c.get(path).map(|r| (c, r))) {
                    Ok((c, r)) => {
                        if s.judge(&o.check, &who, path, &r) {
                            s.retried.fetch_add(1, Ordering::SeqCst);
                            let mut l = s.retries.lock().unwrap();
                            if l.len() < 20 {
                                l.push(format!("{:>6} ms {who} GET {path}: {e}", s.ms()));
                            }
                        }
                        if !r.closes() {
                            conn = Some(c);
                        }
                    }
                    Err(e2) => s.fail(
                        &who,
                        path,
                        format!("{e} on a reused connection, then {e2} on a new one"),
                    ),
                }
            }
            Err(e) => s.fail(
                &who,
                path,
                format!(
                    "{e} ({:?}) on a {} connection",
                    e.kind(),
                    if reused { "reused" } else { "new" }
                ),
            ),
        }
        thread::sleep(o.pause);
    }
}

fn fresh_client(port: u16, t: usize, s: &LoadShared, o: &LoadOpts) {
    let who = format!("new-conn#{t}");
    let mut i = t;
    while load_running(s, o) {
        let path = o.paths[i % o.paths.len()].as_str();
        i += 1;
        match Conn::open(port)
            .and_then(|mut c| c.request("GET", path, &[("Connection", "close")], b""))
        {
            Ok(r) => {
                s.judge(&o.check, &who, path, &r);
            }
            Err(e) => s.fail(&who, path, format!("{e} ({:?})", e.kind())),
        }
        thread::sleep(o.pause);
    }
}

/// Runs `per_thread` requests in each of `threads` client threads at once
/// (`f(thread, i)` makes one request and returns what it saw); returns
/// all the results. Concurrent clients make every worker accept some.
pub fn concurrently<T: Send + 'static>(
    threads: usize,
    per_thread: usize,
    f: impl Fn(usize, usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let handles: Vec<JoinHandle<Vec<T>>> = (0..threads)
        .map(|t| {
            let f = f.clone();
            thread::spawn(move || (0..per_thread).map(|i| f(t, i)).collect())
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("client thread panicked"))
        .collect()
}

/// How many of `items` equal `what`.
pub fn count_of<T: PartialEq>(items: &[T], what: &T) -> usize {
    items.iter().filter(|x| *x == what).count()
}

/// The bodies of `threads` × `per_thread` GETs of `{prefix}/{t}/{i}`, each
/// on a new connection (`Connection: close`), from `threads` client threads
/// at once; every one must answer 200.
pub fn burst_bodies(port: u16, prefix: &str, threads: usize, per_thread: usize) -> Vec<String> {
    let prefix = prefix.to_owned();
    concurrently(threads, per_thread, move |t, i| {
        let path = format!("{prefix}/{t}/{i}");
        let r = get_with(port, &path, &[("Connection", "close")]);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        r.body_str()
    })
}
