//! Runs the real `strom` binary as a child process, for tests that need signals or `kill -9`.
//!
//! [`BrokerProcess::spawn`] starts a broker and waits for its ready line. Tests that start several brokers which
//! only get ready together (the nodes of a cluster) [`BrokerProcess::launch`] each first and then
//! [`Starting::wait_ready`] for each.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct BrokerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every line the broker logged so far (stderr), collected by a reader thread.
    pub log: Arc<Mutex<Vec<String>>>,
    events: Receiver<Event>,
}

/// A broker process launched but not (yet) ready.
pub struct Starting {
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    events: Receiver<Event>,
}

/// What the stderr reader thread reports.
enum Event {
    Ready(String),
    /// stderr closed: the process exited (or is about to).
    Closed,
}

/// Why a launched broker did not get ready.
#[derive(Debug)]
pub struct StartFailure {
    /// The exit status, or None if it was still running at the deadline (it has been killed since).
    pub status: Option<ExitStatus>,
    pub log: Vec<String>,
}

impl StartFailure {
    /// The broker could not bind one of its listeners: another process took the port (tests pick free ports
    /// and release them before the broker binds them, so this can happen).
    pub fn port_taken(&self) -> bool {
        self.status.is_some()
            && self
                .log
                .iter()
                .any(|l| l.contains("Address already in use"))
    }
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "the broker exited ({status}) before it was ready")?,
            None => write!(f, "the broker was not ready in time (killed it)")?,
        }
        write!(f, "; it logged:\n{}", self.log.join("\n"))
    }
}

impl BrokerProcess {
    /// Starts `strom broker <args>` and waits for its "ready" line, which names the bound address.
    pub fn spawn(args: &[&std::ffi::OsStr]) -> Self {
        match Self::launch(args).wait_ready(Duration::from_secs(60)) {
            Ok(broker) => broker,
            Err(failure) => panic!(
                "broker did not get ready; it logged:\n{}",
                failure.log.join("\n")
            ),
        }
    }

    /// Starts `strom broker <args>` without waiting for anything.
    pub fn launch(args: &[&std::ffi::OsStr]) -> Starting {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
            .arg("broker")
            .args(args)
            // STROM_TEST_BROKER_LOG=info,strom_broker::replication=debug (say) to see more of a failing run.
            .env(
                "STROM_LOG",
                std::env::var("STROM_TEST_BROKER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strom broker");
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, events) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut ready = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !ready && line.contains("Strom broker ready") {
                    ready = true;
                    let _ = tx.send(Event::Ready(line.clone()));
                }
                lines.lock().unwrap().push(line);
            }
            let _ = tx.send(Event::Closed);
        });
        Starting {
            child: Some(child),
            log,
            events,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited successfully.
    pub fn terminate(self) -> (bool, Vec<String>) {
        self.sigterm();
        let (status, log) = self.wait_exit();
        (status.success(), log)
    }

    /// Sends SIGTERM and returns at once (a controlled shutdown then runs in the broker).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, and for its log to be read to the end.
    pub fn wait_exit(mut self) -> (ExitStatus, Vec<String>) {
        let exit = self.child.wait().expect("wait for broker");
        // The reader thread finishes once stderr closes.
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(Event::Ready(_)) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {}
        let log = self.log.lock().unwrap().clone();
        (exit, log)
    }

    /// Waits at most `timeout` for the process to exit (polling its status); past that, kills it and fails the
    /// test with its log.
    pub fn wait_exit_within(mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + timeout;
        while self.child.try_wait().expect("poll the broker").is_none() {
            if Instant::now() >= deadline {
                panic!(
                    "broker {} still running {timeout:?} after it was asked to stop; it logged:\n{}",
                    self.child.id(),
                    self.log_lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.wait_exit()
    }

    /// Every line logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL: no chance to flush or close anything.
    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Starting {
    /// Waits up to `timeout` for the ready line. On failure the process has exited or has been killed.
    pub fn wait_ready(mut self, timeout: Duration) -> Result<BrokerProcess, StartFailure> {
        // The reader reports the ready line at most once, and before it reports the end of the log.
        let line = match self.events.recv_timeout(timeout) {
            Ok(Event::Ready(line)) => line,
            Ok(Event::Closed) | Err(RecvTimeoutError::Disconnected) => {
                let mut child = self.child.take().expect("child");
                let status = child.wait().expect("wait for broker");
                return Err(StartFailure {
                    status: Some(status),
                    log: self.log_lines(),
                });
            }
            Err(RecvTimeoutError::Timeout) => {
                let mut child = self.child.take().expect("child");
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartFailure {
                    status: None,
                    log: self.log_lines(),
                });
            }
        };
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no listen= in {line:?}"));
        Ok(BrokerProcess {
            child: self.child.take().expect("child"),
            addr,
            log: self.log.clone(),
            // Starting has a Drop, so its receiver is swapped out rather than moved.
            events: std::mem::replace(&mut self.events, std::sync::mpsc::channel().1),
        })
    }

    /// Every line logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The log as it grows, also after the process is gone.
    pub fn log_handle(&self) -> Arc<Mutex<Vec<String>>> {
        self.log.clone()
    }

    /// The exit status, if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().expect("poll the broker")
    }

    /// Waits up to `timeout` for the process to exit on its own; None (and the process killed) if it did not.
    pub fn wait_exit(mut self, timeout: Duration) -> (Option<ExitStatus>, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let mut closed = false;
        while !closed {
            match self
                .events
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Event::Ready(_)) => {}
                Ok(Event::Closed) | Err(RecvTimeoutError::Disconnected) => closed = true,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        let mut child = self.child.take().expect("child");
        let status = if closed {
            Some(child.wait().expect("wait for broker"))
        } else {
            let _ = child.kill();
            let _ = child.wait();
            None
        };
        (status, self.log_lines())
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
