//! `nftproxy compile`: manifests in, the node's nft script (or libnftables JSON) out.
//!
//! Offline and deterministic: the same input gives byte-identical output. The ruleset goes
//! to stdout (or `-o FILE`); diagnostics go to stderr, one line each, naming the object and,
//! for file input, the file and line it was decoded from.
//! Exit status: 0 ok (even with warnings), 1 diagnostics with `--strict`, 2 unusable input.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use nftproxy_compiler::{CompileConfig, Diagnostic, Severity, compile};

use crate::cli::{CompileArgs, OutputFormat};
use crate::inputs::{self, Inputs};
use crate::settings::Settings;

/// Exit status when there are diagnostics and `--strict` was given.
const EXIT_DIAGNOSTICS: u8 = 1;

/// Runs `compile`. `Err` means unusable input (the caller exits with status 2).
pub fn run(args: &CompileArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(args.node.config.as_deref(), args.node.hostname.as_deref())?;
    let mut config = settings.compile;
    config
        .extra_node_ips
        .extend(args.node.node_ips.iter().copied());

    let inputs = inputs::load(&args.inputs)?;
    tracing::debug!(
        hostname = %config.hostname,
        services = inputs.snapshot.services.len(),
        endpoint_slices = inputs.snapshot.endpoint_slices.len(),
        nodes = inputs.snapshot.nodes.len(),
        "compiling"
    );
    let mut warnings = inputs.warnings.clone();
    warnings.extend(missing_node_warning(&inputs, &config));

    let compiled = compile(&inputs.snapshot, &config);
    let lines: Vec<String> = warnings
        .into_iter()
        .chain(compiled.diagnostics.iter().map(|d| locate(d, &inputs)))
        .collect();
    report(&lines);

    let rendered = match args.format {
        OutputFormat::Nft => compiled.ruleset.to_string(),
        OutputFormat::Json => pretty_json(&compiled.ruleset.to_json())?,
        OutputFormat::Services => {
            pretty_json(&nftproxy_compiler::describe(&inputs.snapshot, &config))?
        }
    };
    write_output(args.output.as_deref(), &rendered)?;

    if args.strict && !lines.is_empty() {
        return Ok(ExitCode::from(EXIT_DIAGNOSTICS));
    }
    Ok(ExitCode::SUCCESS)
}

/// A warning when the input has no Node for this node: addresses then come from `--node-ip`.
fn missing_node_warning(inputs: &Inputs, config: &CompileConfig) -> Option<String> {
    let found = inputs
        .snapshot
        .nodes
        .iter()
        .any(|n| n.metadata.name.as_deref() == Some(config.hostname.as_str()));
    (!found).then(|| {
        format!(
            "warning: Node {}: not in the input; node addresses are only those given with --node-ip",
            config.hostname
        )
    })
}

/// One diagnostic line: `warning: FILE:LINE: Kind ns/name: message` (no location for
/// objects that did not come from a file line).
fn locate(diagnostic: &Diagnostic, inputs: &Inputs) -> String {
    let level = match diagnostic.severity {
        Severity::Warning => "warning",
        Severity::Error => "error",
    };
    match inputs.origins.get(&diagnostic.object) {
        Some(origin) => format!(
            "{level}: {origin}: {}: {}",
            diagnostic.object, diagnostic.message
        ),
        None => diagnostic.to_string(),
    }
}

fn report(lines: &[String]) {
    let stderr = std::io::stderr();
    let mut out = stderr.lock();
    for line in lines {
        // stderr is best effort: a closed stderr must not lose the ruleset.
        let _ = writeln!(out, "{line}");
    }
}

/// `value` as pretty-printed JSON with a final newline.
fn pretty_json(value: &impl serde::Serialize) -> anyhow::Result<String> {
    let mut json =
        serde_json::to_string_pretty(value).context("cannot serialize the output as JSON")?;
    json.push('\n');
    Ok(json)
}

fn write_output(path: Option<&Path>, rendered: &str) -> anyhow::Result<()> {
    match path {
        Some(p) => std::fs::write(p, rendered)
            .with_context(|| format!("{}: cannot write the ruleset", p.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(rendered.as_bytes())
                .and_then(|()| out.flush())
                .context("cannot write the ruleset to stdout")
        }
    }
}
