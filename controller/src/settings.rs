//! Settings shared by `compile` and `run`: the KubeProxyConfiguration, this node's name and
//! the compile configuration derived from them.

use std::path::Path;

use anyhow::Context;
use nftproxy_compiler::CompileConfig;
use nftproxy_compiler::kube_proxy_config::{KubeProxyConfiguration, resolve_hostname};

/// The configuration file as read, and what the compiler needs from it.
#[derive(Debug)]
pub struct Settings {
    pub kube_proxy: KubeProxyConfiguration,
    pub compile: CompileConfig,
}

impl Settings {
    /// Reads `--config` (defaults when absent) and resolves the node name from `--hostname`,
    /// else `hostnameOverride`, else this machine's hostname.
    pub fn load(config: Option<&Path>, hostname: Option<&str>) -> anyhow::Result<Settings> {
        let kube_proxy = load_kube_proxy_config(config)?;
        let hostname = resolve_hostname(hostname, &kube_proxy.hostname_override, machine_hostname)?;
        let compile = kube_proxy
            .compile_config(&hostname)
            .with_context(|| config_location(config))?;
        Ok(Settings {
            kube_proxy,
            compile,
        })
    }
}

/// Reads `--config`, or the defaults when it is absent.
fn load_kube_proxy_config(path: Option<&Path>) -> anyhow::Result<KubeProxyConfiguration> {
    let Some(path) = path else {
        return Ok(KubeProxyConfiguration::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the configuration", path.display()))?;
    KubeProxyConfiguration::from_yaml(&text).map_err(|e| match e.line() {
        Some(line) => anyhow::anyhow!("{}:{line}: {e}", path.display()),
        None => anyhow::anyhow!("{}: {e}", path.display()),
    })
}

fn config_location(path: Option<&Path>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "configuration".to_owned(),
    }
}

/// This machine's hostname, as the kernel knows it (no `unsafe` needed).
fn machine_hostname() -> std::io::Result<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
}

/// kube-proxy's default `healthzBindAddress`.
pub const DEFAULT_HEALTHZ_BIND_ADDRESS: &str = "0.0.0.0:10256";
/// kube-proxy's default `metricsBindAddress`.
pub const DEFAULT_METRICS_BIND_ADDRESS: &str = "127.0.0.1:10249";

/// A server address as kube-proxy takes it: `IP:PORT`, or a bare IP with `default`'s port;
/// empty means `default`. Port 0 disables the server (`None`).
pub fn bind_address(
    field: &str,
    value: &str,
    default: &str,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    use std::net::{IpAddr, SocketAddr};
    let text = if value.trim().is_empty() {
        default
    } else {
        value.trim()
    };
    let default_port = default
        .parse::<SocketAddr>()
        .map(|a| a.port())
        .unwrap_or_default();
    let addr = match text.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, default_port),
            Err(_) => anyhow::bail!("{field}: {text:?} is not IP:PORT"),
        },
    };
    Ok((addr.port() != 0).then_some(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_default_take_bare_ips_and_port_zero_disables() {
        let default = DEFAULT_HEALTHZ_BIND_ADDRESS;
        let parse =
            |v| bind_address("healthzBindAddress", v, default).map(|a| a.map(|a| a.to_string()));
        assert_eq!(parse("").unwrap().as_deref(), Some("0.0.0.0:10256"));
        assert_eq!(
            parse("127.0.0.1:9000").unwrap().as_deref(),
            Some("127.0.0.1:9000")
        );
        assert_eq!(parse("::1").unwrap().as_deref(), Some("[::1]:10256"));
        assert_eq!(parse("0.0.0.0:0").unwrap(), None);
        let err = parse("localhost:80").unwrap_err().to_string();
        assert!(
            err.contains("healthzBindAddress") && err.contains("localhost:80"),
            "{err}"
        );
    }
}
