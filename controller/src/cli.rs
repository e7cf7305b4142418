//! The command line: `nftproxy [--log-format text|json] compile|run|cleanup [OPTIONS]`.
//!
//! Only the shape of the command line lives here (clap derive); what a subcommand does lives
//! in its own module. Bad flags make clap exit with status 2, like unusable input.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A Kubernetes service proxy that programs nftables.
#[derive(Debug, Parser)]
#[command(name = "nftproxy", version, about, propagate_version = true)]
pub struct Cli {
    /// Format of log lines on stderr (level from RUST_LOG, default `warn`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile manifests into the nftables ruleset a node would get (nft script or JSON).
    Compile(CompileArgs),
    /// Keep this node's nftables equal to the cluster (API server or a manifest directory).
    Run(RunArgs),
    /// Remove nftproxy's nftables tables (and nothing else).
    Cleanup(CleanupArgs),
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Output format of `compile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The nft script, for `nft -f`.
    Nft,
    /// libnftables JSON, for `nft -j -f`.
    Json,
    /// What each Service is compiled into, as JSON (the same view as `/debug/services`):
    /// addresses, ports, endpoints per family, local endpoints, diagnostics.
    Services,
}

/// The configuration and the node, as `compile` and `run` both take them.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// A KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The node's name (default: hostnameOverride, else this machine's hostname).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// An address of the node, in addition to its Node object's status.addresses.
    #[arg(long = "node-ip", value_name = "IP")]
    pub node_ips: Vec<IpAddr>,
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub node: NodeArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Nft)]
    pub format: OutputFormat,

    /// Write the ruleset to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Exit with status 1 when there are diagnostics (the ruleset is still written).
    #[arg(long)]
    pub strict: bool,

    /// Manifest files or directories (*.yaml, *.yml, *.json, recursively); `-` is stdin.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub node: NodeArgs,

    /// A kubeconfig file (default: in-cluster configuration, else $KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "FILE", conflicts_with = "manifests")]
    pub kubeconfig: Option<PathBuf>,

    /// Read the cluster from this directory of manifests instead of an API server, and
    /// follow its changes.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    /// The nftables helper program (default: `nftproxy-nft` next to this program, else in $PATH).
    #[arg(long, value_name = "FILE")]
    pub nft_helper: Option<PathBuf>,

    /// How partial syncs reach the kernel: `netlink` (batches nftproxy encodes itself,
    /// falling back to libnftables for what the encoder does not cover) or `libnftables`
    /// (always through the helper). Full syncs always use libnftables.
    #[arg(long, value_enum, value_name = "ROUTE", default_value = "netlink")]
    pub partial_apply: PartialApply,

    /// Where `/healthz`, `/livez` and `/readyz` are served (IP:PORT; port 0 disables).
    /// Overrides the configuration's `healthzBindAddress` (default 0.0.0.0:10256).
    #[arg(long, value_name = "IP:PORT")]
    pub healthz_bind_address: Option<String>,

    /// Where `/metrics` and `/debug/...` are served (IP:PORT; port 0 disables).
    /// Overrides the configuration's `metricsBindAddress` (default 127.0.0.1:10249).
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_bind_address: Option<String>,
}

/// The `--partial-apply` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PartialApply {
    Netlink,
    Libnftables,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The nftables helper program (default: `nftproxy-nft` next to this program, else in $PATH).
    #[arg(long, value_name = "FILE")]
    pub nft_helper: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn compile_accepts_every_documented_flag() {
        let cli = Cli::try_parse_from([
            "nftproxy",
            "--log-format",
            "json",
            "compile",
            "--config",
            "c.yaml",
            "--hostname",
            "node-1",
            "--node-ip",
            "198.51.100.7",
            "--node-ip",
            "2001:db8:51::7",
            "--format",
            "json",
            "-o",
            "out.json",
            "--strict",
            "a.yaml",
            "-",
        ]);
        let Ok(Cli {
            log_format,
            command: Command::Compile(args),
        }) = cli
        else {
            panic!("should parse: {cli:?}");
        };
        assert_eq!(log_format, LogFormat::Json);
        assert_eq!(args.node.hostname.as_deref(), Some("node-1"));
        assert_eq!(args.node.node_ips.len(), 2);
        assert_eq!(args.format, OutputFormat::Json);
        assert!(args.strict);
        assert_eq!(args.inputs, [PathBuf::from("a.yaml"), PathBuf::from("-")]);
    }

    #[test]
    fn run_takes_manifests_or_a_kubeconfig_but_not_both() {
        let cli = Cli::try_parse_from(["nftproxy", "run", "--manifests", "dir", "--hostname", "n"]);
        let Ok(Cli {
            command: Command::Run(args),
            ..
        }) = cli
        else {
            panic!("should parse: {cli:?}");
        };
        assert_eq!(args.manifests, Some(PathBuf::from("dir")));
        let both = ["nftproxy", "run", "--manifests", "d", "--kubeconfig", "k"];
        assert!(Cli::try_parse_from(both).is_err());
    }

    #[test]
    fn compile_without_input_is_refused() {
        assert!(Cli::try_parse_from(["nftproxy", "compile"]).is_err());
    }

    #[test]
    fn node_ip_must_be_an_address() {
        assert!(Cli::try_parse_from(["nftproxy", "compile", "--node-ip", "node", "a"]).is_err());
    }
}
