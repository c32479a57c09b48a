//! Test support (feature `testing`, native only): a real `redis-server` for tests of code that uses
//! [`RedisKv`](crate::redis::RedisKv).

use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `redis-server` child process on 127.0.0.1 with persistence off (every start is empty), killed and
/// reaped when dropped.
///
/// ```no_run
/// let redis = edge_kv::testing::RedisServer::start().expect("redis-server installed");
/// println!("{}", redis.url());
/// ```
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// `redis-server` is not installed, or did not start listening within 5 s.
    pub fn start() -> io::Result<Self> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        Self::start_on(port)
    }

    /// Starts a server on `port` (to restart one where a client expects it).
    ///
    /// # Errors
    ///
    /// `redis-server` is not installed, or did not start listening within 5 s.
    pub fn start_on(port: u16) -> io::Result<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // Owned from here on, so it is killed and reaped on drop whatever happens next.
        let server = Self { child, port };
        for _ in 0..100 {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("redis-server did not start on port {port}"),
        ))
    }

    /// The port it listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server now (as a crash would: SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
