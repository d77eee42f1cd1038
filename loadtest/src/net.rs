//! Loopback-only targets, source-address rotation and the open-files limit.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use anyhow::{Context, bail};

/// Resolves `target` (`host:port`) and refuses anything that is not loopback: this
/// tool only ever loads services on the machine it runs on.
pub(crate) fn loopback_target(target: &str) -> anyhow::Result<SocketAddr> {
    let addr = target
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {target}"))?
        .next()
        .with_context(|| format!("{target} resolves to nothing"))?;
    if !addr.ip().is_loopback() {
        bail!("refusing non-loopback target {addr}: alert-loadtest only loads this machine");
    }
    Ok(addr)
}

/// The host:port part of `http://host:port/...`, checked with [`loopback_target`].
pub(crate) fn loopback_url(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    loopback_target(authority)
}

/// Source addresses 127.0.0.1 .. 127.0.0.N handed out round-robin, so one client
/// process can open more than the ~28k ephemeral ports a single address allows.
#[derive(Debug, Clone)]
pub(crate) struct SourceAddrs {
    count: u32,
    first: u32,
}

impl SourceAddrs {
    /// `count` addresses starting at 127.0.0.`first_host` (counting up through
    /// 127.0.1.x and so on; all of 127/8 is loopback on Linux).
    pub(crate) fn new(count: u32, first_host: u32) -> Self {
        Self {
            count: count.max(1),
            first: first_host.max(1),
        }
    }

    /// The source address for the `i`-th connection.
    pub(crate) fn get(&self, i: u64) -> IpAddr {
        let host = self.first + (i % u64::from(self.count)) as u32;
        let base = u32::from(Ipv4Addr::new(127, 0, 0, 0));
        IpAddr::V4(Ipv4Addr::from(base + (host & 0x00ff_ffff)))
    }
}

/// Raises the soft open-files limit to the hard limit; returns the new soft limit.
pub(crate) fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            eprintln!("cannot raise the open-files limit: {error}");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_pass_and_others_are_refused() {
        assert!(loopback_target("127.0.0.1:4002").is_ok());
        assert!(loopback_target("127.0.0.9:80").is_ok());
        assert!(loopback_target("[::1]:4002").is_ok());
        assert!(loopback_target("localhost:4002").is_ok());
        assert!(loopback_target("10.0.0.1:4002").is_err());
        assert!(loopback_target("8.8.8.8:53").is_err());
        assert!(loopback_url("http://127.0.0.1:4000").is_ok());
        assert!(loopback_url("http://127.0.0.1:4000/api/alerts").is_ok());
        assert!(loopback_url("http://192.168.1.1:4000").is_err());
        assert!(loopback_url("https://127.0.0.1:4000").is_err());
    }

    #[test]
    fn source_addresses_rotate() {
        let addrs = SourceAddrs::new(3, 1);
        let got: Vec<String> = (0..5).map(|i| addrs.get(i).to_string()).collect();
        assert_eq!(
            got,
            [
                "127.0.0.1",
                "127.0.0.2",
                "127.0.0.3",
                "127.0.0.1",
                "127.0.0.2"
            ]
        );
        let wide = SourceAddrs::new(300, 1);
        assert_eq!(wide.get(255).to_string(), "127.0.1.0");
        assert_eq!(SourceAddrs::new(0, 0).get(7).to_string(), "127.0.0.1");
    }
}
