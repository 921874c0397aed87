//! Local services the tasks start on 127.0.0.1: child processes killed on drop, free ports.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Kills the child process when dropped.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something listens on `port` of 127.0.0.1.
pub(crate) fn wait_for_port(port: u16, what: &str, log: &str) -> Result<()> {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(60) {
            bail!("{what} did not listen on 127.0.0.1:{port} within 60 s (see {log})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Azurite's well-known development account.
pub(crate) const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
