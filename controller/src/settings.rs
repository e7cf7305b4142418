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
