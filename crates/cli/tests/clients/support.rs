//! Helpers for the end-to-end tests that drive the broker with external clients (kcat, Python, Node): run a
//! program with a deadline and collect its output, and look at the record batches a topic holds on disk.
//!
//! Included by those test files with `#[path = "clients/support.rs"] mod support;`.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use strom_log::{BatchHeader, Compression};
use wait_timeout::ChildExt;

/// What a finished program printed, and how it exited.
pub struct Finished {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The command line, exit status and both output streams, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "command: {}\nexit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    /// Panics with the full report unless the program exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "client failed\n{}", self.report());
        self
    }

    /// For the client scripts, which exit 2 when their library is missing or the wrong version: panics with
    /// `install_hint` then, with the full report on any other failure.
    #[track_caller]
    pub fn assert_client_success(&self, install_hint: &str) -> &Self {
        if self.status.code() == Some(2) {
            panic!("the client cannot run: {install_hint}\n{}", self.report());
        }
        self.assert_success()
    }
}

/// Runs `command` with `stdin` as its standard input, waits at most `timeout` (then kills it and panics with what
/// it printed so far), and returns its output. A program that is not installed fails the test with
/// `install_hint`, never skips it.
#[track_caller]
pub fn run(
    command: &mut Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    install_hint: &str,
) -> Finished {
    let described = format!("{command:?}");
    let mut child = match command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{:?} is not installed (or not on PATH): {install_hint}",
            command.get_program()
        ),
        Err(e) => panic!("cannot start {described}: {e}"),
    };
    let writer = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            // A client that exits early closes the pipe; its exit status and output tell why.
            let _ = pipe.write_all(&bytes);
        })
    });
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let status = match child.wait_timeout(timeout).expect("wait for client") {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let status = child.wait().expect("reap killed client");
            let killed = Finished {
                command: described,
                status,
                stdout: out.join().unwrap(),
                stderr: err.join().unwrap(),
            };
            panic!(
                "client still running after {timeout:?}, killed it\n{}",
                killed.report()
            );
        }
    };
    if let Some(writer) = writer {
        writer.join().unwrap();
    }
    Finished {
        command: described,
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The directory holding this crate's client scripts (`crates/cli/tests/clients`).
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Every record batch header of one partition as stored on disk, in log order.
pub fn batches_on_disk(data_dir: &Path, topic: &str, partition: i32) -> Vec<BatchHeader> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("partition directory {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let mut headers = Vec::new();
    for segment in segments {
        let bytes = std::fs::read(&segment).unwrap();
        let mut pos = 0;
        while pos < bytes.len() {
            let header = BatchHeader::parse(&bytes[pos..]).unwrap_or_else(|e| {
                panic!("{} at byte {pos}: {e}", segment.display());
            });
            pos += header.total_size();
            headers.push(header);
        }
    }
    headers
}

/// Asserts that every batch of `topic` (partitions `0..partitions`) is stored with `codec`, and returns how many
/// records they hold in all.
#[track_caller]
pub fn assert_stored_with(
    data_dir: &Path,
    topic: &str,
    partitions: i32,
    codec: Compression,
) -> usize {
    let mut records = 0;
    for partition in 0..partitions {
        for header in batches_on_disk(data_dir, topic, partition) {
            assert_eq!(
                header.compression(),
                codec,
                "{topic}[{partition}] batch at offset {} ({} records) is stored {:?}, the producer was asked \
                 for {codec:?}",
                header.base_offset,
                header.records_count,
                header.compression()
            );
            records += header.records_count as usize;
        }
    }
    records
}
