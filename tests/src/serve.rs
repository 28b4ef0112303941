//! A `wisp serve` process for the tests: started on a free port (`--port 0`), its stderr
//! kept (a full pipe would stall the server, and failures show it), asked whether it is
//! ready through `GET /health`, stopped with SIGTERM. Killed when dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::wisp_cli::wisp_bin;

const LISTENING: &str = "listening on http://";

pub struct ServeProcess {
    child: Child,
    port: u16,
    /// Everything the server wrote on stderr so far.
    log: Arc<Mutex<String>>,
}

impl ServeProcess {
    /// Starts `wisp serve --port 0 ARGS...` and returns once it says where it listens
    /// (which it does before its model is loaded: see [`health_status`](Self::health_status)).
    /// Panics, with the server's log, if it exits first or says nothing within `timeout`.
    pub fn spawn(args: &[&str], timeout: Duration) -> ServeProcess {
        let mut child = Command::new(wisp_bin())
            .args(["serve", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wisp serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[serve] {line}");
                // Into the log before the port is announced, so that a caller woken by
                // the port finds the line that gave it.
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&format!("{line}\n"));
                if let Some(port) = listening_port(&line) {
                    let _ = port_tx.send(port);
                }
            }
        });
        let mut server = ServeProcess {
            child,
            port: 0,
            log,
        };
        let what = format!("{args:?} printed its `listening on` line");
        server.wait_for(&what, Instant::now() + timeout, |s| {
            match port_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(port) => {
                    s.port = port;
                    true
                }
                Err(_) => false,
            }
        });
        server
    }

    /// Polls `ready` (which paces itself) until it holds; panics with the log if the
    /// server exits first or `deadline` passes.
    pub fn wait_for(
        &mut self,
        what: &str,
        deadline: Instant,
        mut ready: impl FnMut(&mut Self) -> bool,
    ) {
        while !ready(self) {
            if let Some(status) = self.exited() {
                // Let the reader thread take in the last lines.
                thread::sleep(Duration::from_millis(200));
                panic!(
                    "wisp serve exited with {status} before {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "wisp serve: not done in time: {what}:\n{}",
                self.log()
            );
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Everything the server wrote on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The status of `GET /health` (`None`: no answer). Plain HTTP/1.0 over a socket, so
    /// callers need no HTTP client for it.
    pub fn health_status(&self) -> Option<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .ok()?;
        let mut status_line = String::new();
        BufReader::new(stream).read_line(&mut status_line).ok()?;
        // "HTTP/1.1 200 OK"
        status_line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Its exit status, once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for wisp serve")
    }

    /// Sends SIGTERM (through bash's `kill` builtin: no signal crate, and bash is
    /// everywhere these tests run).
    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("bash")
            .args(["-c", "kill -TERM \"$1\"", "kill", &pid])
            .status()
            .expect("run bash");
        assert!(sent.success(), "kill -TERM {pid} failed");
    }

    /// Waits at most `timeout` for the process to end; kills it when it runs longer
    /// (`None`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_with_timeout(&mut self.child, timeout)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for `child` at most `timeout`; kills it when it runs longer (`None`).
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The port of a `listening on http://HOST:PORT` line.
fn listening_port(line: &str) -> Option<u16> {
    let address = &line[line.find(LISTENING)? + LISTENING.len()..];
    let address = address
        .split(|c: char| c.is_whitespace() || c == '/')
        .next()?;
    address.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_the_port() {
        assert_eq!(
            listening_port("listening on http://127.0.0.1:40123"),
            Some(40123)
        );
        assert_eq!(
            listening_port("wisp serve: listening on http://[::1]:8080/ (model smollm2)"),
            Some(8080)
        );
        assert_eq!(listening_port("loading the model"), None);
    }
}
