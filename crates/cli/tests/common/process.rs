//! Runs the real `strom` binary as a child process, for tests that need signals or `kill -9`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct BrokerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every line the broker logged so far (stderr), collected by a reader thread.
    pub log: Arc<Mutex<Vec<String>>>,
    exited: std::sync::mpsc::Receiver<()>,
}

impl BrokerProcess {
    /// Starts `strom broker <args>` and waits for its "ready" line, which names the bound address.
    pub fn spawn(args: &[&std::ffi::OsStr]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
            .arg("broker")
            .args(args)
            .env("STROM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strom broker");
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (exit_tx, exited) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Strom broker ready") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(line.clone());
                    }
                }
                lines.lock().unwrap().push(line);
            }
            let _ = exit_tx.send(());
        });
        let line = match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => panic!(
                "broker did not get ready; it logged:\n{}",
                log.lock().unwrap().join("\n")
            ),
        };
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no listen= in {line:?}"));
        Self {
            child,
            addr,
            log,
            exited,
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited successfully.
    pub fn terminate(mut self) -> (bool, Vec<String>) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait for broker");
        // The reader thread finishes once stderr closes.
        let _ = self.exited.recv_timeout(Duration::from_secs(10));
        let log = self.log.lock().unwrap().clone();
        (exit.success(), log)
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
