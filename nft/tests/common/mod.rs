//! Support shared by the helper's integration tests: start it in a namespace, talk to it.
#![allow(dead_code)]

#[path = "../../../controller/tests/common/netns.rs"]
pub mod netns;

use std::process::{Child, Command, Stdio};

use netns::NetNs;
use nftproxy_wire::{Format, Request, Response, read_response, write_request};

/// The helper program, for `spawn_piped` (or as the program another one runs).
pub const HELPER: &str = env!("CARGO_BIN_EXE_nftproxy-nft");

/// Starts `command` inside `ns` with all three standard streams piped.
pub fn spawn_piped(ns: &NetNs, mut command: Command) -> Child {
    ns.run_inside(move || {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the helper starts")
    })
}

/// Sends `request` and reads the answer.
pub fn ask(child: &mut Child, request: &Request) -> Response {
    write_request(child.stdin.as_mut().unwrap(), request).unwrap();
    read_response(child.stdout.as_mut().unwrap()).unwrap()
}

/// A `Run` request.
pub fn run(format: Format, commands: &str) -> Request {
    Request::Run {
        format,
        commands: commands.into(),
    }
}
