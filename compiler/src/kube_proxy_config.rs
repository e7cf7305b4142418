//! `KubeProxyConfiguration` (kubeproxy.config.k8s.io/v1alpha1): the file users already have
//! for kube-proxy, decoded as-is and mapped onto the compiler's [`CompileConfig`].
//!
//! The model is faithful to the upstream type (camelCase fields, unknown fields tolerated) so
//! that an existing kube-proxy ConfigMap works unchanged. Validation that concerns single
//! fields (mode, masquerade bit, durations) happens while decoding, so errors carry the
//! line; validation that concerns the mapping (CIDRs, detectLocal) happens in
//! [`KubeProxyConfiguration::compile_config`]. No I/O here: the machine's hostname is looked
//! up by the caller and passed to [`resolve_hostname`] as a closure.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

use crate::config::{CompileConfig, DetectLocal};

/// The only `apiVersion` accepted.
pub const API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";
/// The only `kind` accepted.
pub const KIND: &str = "KubeProxyConfiguration";
/// kube-proxy's default `nftables.masqueradeBit`.
pub const DEFAULT_MASQUERADE_BIT: u8 = 14;
/// kube-proxy's default `nftables.syncPeriod`.
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(30);
/// kube-proxy's default `nftables.minSyncPeriod`.
pub const DEFAULT_MIN_SYNC_PERIOD: Duration = Duration::from_secs(1);

/// What went wrong reading or mapping a `KubeProxyConfiguration`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid YAML, or a field has the wrong shape or value.
    #[error("{message}")]
    Decode {
        /// 1-based line, when the decoder knows it.
        line: Option<usize>,
        message: String,
    },
    /// `apiVersion` or `kind` name another type.
    #[error("expected {API_VERSION} {KIND}, found {api_version} {kind}")]
    WrongType { api_version: String, kind: String },
    /// A `clusterCIDR` entry is not a CIDR, or the list is not one CIDR per family.
    #[error("clusterCIDR {value:?}: {reason}")]
    ClusterCidr { value: String, reason: String },
    /// A `nodePortAddresses` entry is neither `primary` nor a CIDR.
    #[error("nodePortAddresses {value:?}: {reason}")]
    NodePortAddress { value: String, reason: String },
    /// `detectLocalMode: BridgeInterface` without `detectLocal.bridgeInterface`.
    #[error("detectLocalMode BridgeInterface requires detectLocal.bridgeInterface")]
    MissingBridgeInterface,
    /// `detectLocalMode: InterfaceNamePrefix` without `detectLocal.interfaceNamePrefix`.
    #[error("detectLocalMode InterfaceNamePrefix requires detectLocal.interfaceNamePrefix")]
    MissingInterfaceNamePrefix,
    /// No hostname from the flag, `hostnameOverride` or the machine.
    #[error("cannot determine the node name: {0}")]
    Hostname(String),
}

impl ConfigError {
    /// The 1-based line the error was found at, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Decode { line, .. } => *line,
            _ => None,
        }
    }

    fn decode(err: &serde_yaml::Error) -> Self {
        let line = err.location().map(|l| l.line());
        let mut message = err.to_string();
        if let Some(loc) = err.location() {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_owned();
            }
        }
        ConfigError::Decode { line, message }
    }
}

/// kube-proxy's `detectLocalMode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum DetectLocalMode {
    /// Not set: `ClusterCIDR` when `clusterCIDR` is set, else no detector.
    #[default]
    #[serde(rename = "")]
    Unset,
    #[serde(rename = "ClusterCIDR")]
    ClusterCidr,
    #[serde(rename = "NodeCIDR")]
    NodeCidr,
    BridgeInterface,
    InterfaceNamePrefix,
}

/// `detectLocal`: parameters of the interface-based detectors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DetectLocalConfiguration {
    pub bridge_interface: String,
    pub interface_name_prefix: String,
}

/// `nftables`: the nftables backend's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NftablesConfiguration {
    pub masquerade_all: bool,
    /// 0..=31; `None` means the default, 14.
    #[serde(deserialize_with = "de_masquerade_bit")]
    pub masquerade_bit: Option<u8>,
    #[serde(deserialize_with = "de_opt_duration")]
    pub sync_period: Option<Duration>,
    #[serde(deserialize_with = "de_opt_duration")]
    pub min_sync_period: Option<Duration>,
}

/// `conntrack`: sysctl-style conntrack settings, kept for the controller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConntrackConfiguration {
    pub max_per_core: Option<i32>,
    pub min: Option<i32>,
    #[serde(deserialize_with = "de_opt_duration")]
    pub tcp_established_timeout: Option<Duration>,
    #[serde(deserialize_with = "de_opt_duration")]
    pub tcp_close_wait_timeout: Option<Duration>,
    #[serde(deserialize_with = "de_opt_duration")]
    pub udp_timeout: Option<Duration>,
    #[serde(deserialize_with = "de_opt_duration")]
    pub udp_stream_timeout: Option<Duration>,
}

/// A decoded `KubeProxyConfiguration`. Fields nftproxy does not use are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeProxyConfiguration {
    pub api_version: String,
    pub kind: String,
    /// Comma-separated CIDRs, at most one per family.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: String,
    pub detect_local_mode: DetectLocalMode,
    pub detect_local: DetectLocalConfiguration,
    #[serde(deserialize_with = "de_null_as_default")]
    pub node_port_addresses: Vec<String>,
    pub hostname_override: String,
    pub healthz_bind_address: String,
    pub metrics_bind_address: String,
    /// Always `""` or `"nftables"` once decoded.
    #[serde(deserialize_with = "de_mode")]
    pub mode: String,
    pub nftables: NftablesConfiguration,
    pub conntrack: ConntrackConfiguration,
}

impl KubeProxyConfiguration {
    /// Decodes one YAML (or JSON) document. `apiVersion`/`kind` may be omitted but must not
    /// name another type; `mode` must be `nftables` or empty.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_yaml::from_str(text).map_err(|e| ConfigError::decode(&e))?;
        let api_ok = config.api_version.is_empty() || config.api_version == API_VERSION;
        let kind_ok = config.kind.is_empty() || config.kind == KIND;
        if !api_ok || !kind_ok {
            return Err(ConfigError::WrongType {
                api_version: config.api_version,
                kind: config.kind,
            });
        }
        Ok(config)
    }

    /// `nftables.masqueradeBit`, defaulted.
    pub fn masquerade_bit(&self) -> u8 {
        self.nftables
            .masquerade_bit
            .unwrap_or(DEFAULT_MASQUERADE_BIT)
    }

    /// `nftables.syncPeriod`, defaulted (30s).
    pub fn sync_period(&self) -> Duration {
        self.nftables.sync_period.unwrap_or(DEFAULT_SYNC_PERIOD)
    }

    /// `nftables.minSyncPeriod`, defaulted (1s).
    pub fn min_sync_period(&self) -> Duration {
        self.nftables
            .min_sync_period
            .unwrap_or(DEFAULT_MIN_SYNC_PERIOD)
    }

    /// The parsed `clusterCIDR` list (empty when unset). Host bits are cleared, as Go's
    /// `net.ParseCIDR` does; at most one CIDR per family.
    pub fn cluster_cidrs(&self) -> Result<Vec<IpNet>, ConfigError> {
        let err = |reason: &str| ConfigError::ClusterCidr {
            value: self.cluster_cidr.clone(),
            reason: reason.to_owned(),
        };
        let mut cidrs: Vec<IpNet> = Vec::new();
        for part in self.cluster_cidr.split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            let net: IpNet = part.parse().map_err(|_| ConfigError::ClusterCidr {
                value: part.to_owned(),
                reason: "not a CIDR".to_owned(),
            })?;
            if cidrs.iter().any(|c| same_family(c, &net)) {
                return Err(err("at most one CIDR per IP family"));
            }
            cidrs.push(net.trunc());
        }
        Ok(cidrs)
    }

    /// The `nodePortAddresses` entries, validated: `primary` (alone) or CIDRs.
    pub fn node_port_addresses(&self) -> Result<Vec<String>, ConfigError> {
        let entries: Vec<String> = self
            .node_port_addresses
            .iter()
            .map(|s| s.trim().to_owned())
            .collect();
        for entry in &entries {
            if entry == "primary" {
                if entries.len() > 1 {
                    return Err(ConfigError::NodePortAddress {
                        value: entry.clone(),
                        reason: "\"primary\" cannot be combined with CIDRs".to_owned(),
                    });
                }
            } else if entry.parse::<IpNet>().is_err() {
                return Err(ConfigError::NodePortAddress {
                    value: entry.clone(),
                    reason: "not a CIDR or \"primary\"".to_owned(),
                });
            }
        }
        Ok(entries)
    }

    /// The local-traffic detector this configuration selects.
    pub fn detect_local(&self) -> Result<DetectLocal, ConfigError> {
        let cidrs = self.cluster_cidrs()?;
        Ok(match self.detect_local_mode {
            // kube-proxy: ClusterCIDR without a clusterCIDR is a no-op detector.
            DetectLocalMode::Unset | DetectLocalMode::ClusterCidr if cidrs.is_empty() => {
                DetectLocal::None
            }
            DetectLocalMode::Unset | DetectLocalMode::ClusterCidr => {
                DetectLocal::ClusterCidr(cidrs)
            }
            DetectLocalMode::NodeCidr => DetectLocal::NodeCidr,
            DetectLocalMode::BridgeInterface => {
                let bridge = self.detect_local.bridge_interface.trim();
                if bridge.is_empty() {
                    return Err(ConfigError::MissingBridgeInterface);
                }
                DetectLocal::BridgeInterface(bridge.to_owned())
            }
            DetectLocalMode::InterfaceNamePrefix => {
                let prefix = self.detect_local.interface_name_prefix.trim();
                if prefix.is_empty() {
                    return Err(ConfigError::MissingInterfaceNamePrefix);
                }
                DetectLocal::InterfaceNamePrefix(prefix.to_owned())
            }
        })
    }

    /// Maps this configuration onto the compiler's [`CompileConfig`] for node `hostname`.
    /// `extra_node_ips` is left empty: it comes from the command line.
    pub fn compile_config(&self, hostname: &str) -> Result<CompileConfig, ConfigError> {
        Ok(CompileConfig {
            hostname: hostname.to_owned(),
            extra_node_ips: Vec::<IpAddr>::new(),
            detect_local: self.detect_local()?,
            masquerade_all: self.nftables.masquerade_all,
            masquerade_bit: self.masquerade_bit(),
            node_port_addresses: self.node_port_addresses()?,
        })
    }
}

/// Picks the node name the way kube-proxy does: the explicit flag, else `hostnameOverride`,
/// else the machine's hostname (looked up only when needed). Trimmed and lowercased.
pub fn resolve_hostname<E: fmt::Display>(
    flag: Option<&str>,
    hostname_override: &str,
    machine: impl FnOnce() -> Result<String, E>,
) -> Result<String, ConfigError> {
    let chosen = match flag.map(str::trim).filter(|s| !s.is_empty()) {
        Some(name) => name.to_owned(),
        None if !hostname_override.trim().is_empty() => hostname_override.trim().to_owned(),
        None => machine()
            .map_err(|e| ConfigError::Hostname(e.to_string()))?
            .trim()
            .to_owned(),
    };
    if chosen.is_empty() {
        return Err(ConfigError::Hostname("the hostname is empty".to_owned()));
    }
    Ok(chosen.to_lowercase())
}

fn same_family(a: &IpNet, b: &IpNet) -> bool {
    matches!(
        (a, b),
        (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
    )
}

/// Parses a Go `time.Duration` string: `"30s"`, `"1m0s"`, `"1h30m"`, `"500ms"`, `"1.5s"`,
/// `"0"`. Negative durations are refused.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad = || format!("invalid duration {text:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!("negative duration {text:?}"));
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        total_nanos += scaled(number, unit_nanos).ok_or_else(bad)?;
        rest = tail;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| bad())?;
    // The remainder is below 1e9, so it always fits.
    let nanos = u32::try_from(total_nanos % 1_000_000_000).map_err(|_| bad())?;
    Ok(Duration::new(secs, nanos))
}

/// `number` (decimal, optional fraction) times `unit_nanos`, truncated to nanoseconds.
fn scaled(number: &str, unit_nanos: u128) -> Option<u128> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let whole: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = whole.checked_mul(unit_nanos)?;
    let mut scale = unit_nanos;
    for digit in frac.chars() {
        scale /= 10;
        value += u128::from(digit.to_digit(10)?) * scale;
    }
    Some(value)
}

/// Decodes an optional scalar and validates it inside the visitor, so that the decoder
/// reports the scalar's own line when validation fails.
struct CheckedScalar<T> {
    expecting: &'static str,
    check: fn(&str) -> Result<T, String>,
}

impl<'de, T> Visitor<'de> for CheckedScalar<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        (self.check)(v).map(Some).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

fn checked<'de, D: Deserializer<'de>, T>(
    d: D,
    expecting: &'static str,
    check: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, D::Error> {
    d.deserialize_any(CheckedScalar { expecting, check })
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let parsed = checked(d, "a duration such as \"30s\"", |t| match t.trim() {
        "" => Ok(None),
        t => parse_go_duration(t).map(Some),
    })?;
    Ok(parsed.flatten())
}

fn de_masquerade_bit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    checked(d, "an integer in 0..=31", |t| {
        match t.trim().parse::<u8>() {
            Ok(bit @ 0..=31) => Ok(bit),
            _ => Err(format!("nftables.masqueradeBit {t} is out of range 0..=31")),
        }
    })
}

fn de_mode<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let mode = checked(d, "\"nftables\" or \"\"", |t| match t.trim() {
        "" => Ok(String::new()),
        "nftables" => Ok("nftables".to_owned()),
        other => Err(format!(
            "mode {other:?} is not supported: nftproxy implements mode \"nftables\" only"
        )),
    })?;
    Ok(mode.unwrap_or_default())
}

fn de_null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
