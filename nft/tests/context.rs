//! Kernel tests of `Context` and `Worker`: commands reach the kernel of the namespace the
//! context was created in, refusals carry nft's message and change nothing, and the worker
//! keeps concurrent requests apart.
//!
//! Each test works in its own network namespace (never the host's ruleset) and needs root;
//! without it the tests skip, unless `NFTPROXY_REQUIRE_ROOT_TESTS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../../controller/tests/common/netns.rs"]
mod netns;

use netns::{NetNs, kernel_tests_enabled};
use nftproxy_nft::{Context, NftError, Worker};
use serde_json::{Value, json};

/// A small ruleset in nft JSON: a table, a chain with a rule, a set with two elements.
fn ruleset_json() -> String {
    json!({"nftables": [
        {"add": {"table": {"family": "ip", "name": "nftproxy"}}},
        {"add": {"chain": {"family": "ip", "table": "nftproxy", "name": "services"}}},
        {"add": {"set": {"family": "ip", "table": "nftproxy", "name": "cluster-ips",
                         "type": "ipv4_addr"}}},
        {"add": {"element": {"family": "ip", "table": "nftproxy", "name": "cluster-ips",
                             "elem": ["198.19.0.1", "198.19.0.2"]}}},
        {"add": {"rule": {"family": "ip", "table": "nftproxy", "chain": "services",
                          "expr": [{"match": {"op": "==",
                                              "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                                              "right": "@cluster-ips"}},
                                   {"counter": null}, {"accept": null}]}}}
    ]})
    .to_string()
}

fn list_table_json() -> String {
    json!({"nftables": [{"list": {"table": {"family": "ip", "name": "nftproxy"}}}]}).to_string()
}

fn parse(listing: &str) -> Value {
    serde_json::from_str(listing).unwrap_or_else(|e| panic!("not JSON ({e}): {listing}"))
}

/// The items of a listing that name `kind` (table, chain, set, rule), without metainfo.
fn items<'a>(listing: &'a Value, kind: &str) -> Vec<&'a Value> {
    listing["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item.get(kind))
        .collect()
}

#[test]
fn context_applies_a_json_ruleset_and_lists_it_back() {
    if !kernel_tests_enabled("context_applies_a_json_ruleset_and_lists_it_back") {
        return;
    }
    let ns = NetNs::new("nftctx");
    let (applied, json_listing, script_listing) = ns.run_inside(|| {
        let mut ctx = Context::new().unwrap();
        let applied = ctx.run(&ruleset_json(), true).unwrap();
        let json_listing = ctx.run(&list_table_json(), true).unwrap();
        let script_listing = ctx.run("list table ip nftproxy", false).unwrap();
        (applied, json_listing, script_listing)
    });
    assert_eq!(applied, "", "adding prints nothing");
    let listed = parse(&json_listing);
    assert_eq!(
        listed,
        ns.nft_list_json(),
        "the context lists what `nft -j list ruleset` lists"
    );
    let sets = items(&listed, "set");
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0]["elem"], json!(["198.19.0.1", "198.19.0.2"]));
    assert_eq!(items(&listed, "rule").len(), 1);
    assert!(
        script_listing.starts_with("table ip nftproxy {")
            && script_listing.contains("ip daddr @cluster-ips counter packets 0 bytes 0 accept"),
        "script mode lists nft's text:\n{script_listing}"
    );
}

#[test]
fn a_refused_batch_returns_nfts_message_and_leaves_the_kernel_unchanged() {
    if !kernel_tests_enabled("a_refused_batch_returns_nfts_message_and_leaves_the_kernel_unchanged")
    {
        return;
    }
    let ns = NetNs::new("nftref");
    ns.nft_load(&ruleset_json(), true).unwrap();
    let before = ns.nft_list_json();
    let bad_json = json!({"nftables": [
        {"add": {"element": {"family": "ip", "table": "nftproxy", "name": "cluster-ips",
                             "elem": ["198.19.0.3"]}}},
        {"add": {"rule": {"family": "ip", "table": "nftproxy", "chain": "services",
                          "expr": [{"jump": {"target": "no-such-chain"}}]}}}
    ]})
    .to_string();
    let bad_script = "add element ip nftproxy cluster-ips { 198.19.0.3 }\n\
                      delete element ip nftproxy cluster-ips { 198.19.9.9 }\n";
    let (json_result, script_result, after_ok) = ns.run_inside(move || {
        let mut ctx = Context::new().unwrap();
        let json_result = ctx.run(&bad_json, true);
        let script_result = ctx.run(bad_script, false);
        // The context is still usable after a refusal, and its error buffer starts empty.
        let after_ok = ctx.run(&list_table_json(), true);
        (json_result, script_result, after_ok)
    });
    match json_result {
        Err(NftError::Refused { message }) => assert!(
            message.contains("Error:") && message.contains("No such file or directory"),
            "{message}"
        ),
        other => panic!("JSON batch with a jump to a missing chain: {other:?}"),
    }
    match script_result {
        Err(NftError::Refused { message }) => assert!(
            message.starts_with("Error: Could not process rule: No such file or directory")
                && message.contains("element ip nftproxy cluster-ips"),
            "the message is nft's and quotes the input: {message}"
        ),
        other => panic!("deleting a missing element: {other:?}"),
    }
    assert_eq!(
        parse(&after_ok.unwrap()),
        before,
        "a refused batch changed the kernel"
    );
    assert_eq!(ns.nft_list_json(), before);
}

#[test]
fn input_with_a_nul_byte_is_an_error_and_nothing_runs() {
    if !kernel_tests_enabled("input_with_a_nul_byte_is_an_error_and_nothing_runs") {
        return;
    }
    let ns = NetNs::new("nftnul");
    let result = ns.run_inside(|| {
        let mut ctx = Context::new().unwrap();
        ctx.run("add table ip before\0\nadd table ip after\n", false)
    });
    assert_eq!(result, Err(NftError::NulInInput { offset: 19 }));
    let tables = ns.exec_ok(&["nft", "list", "tables"]);
    assert_eq!(tables, "", "no part of the input ran");
}

#[test]
fn a_context_sends_its_commands_to_the_namespace_it_was_created_in() {
    if !kernel_tests_enabled("a_context_sends_its_commands_to_the_namespace_it_was_created_in") {
        return;
    }
    let home = NetNs::new("nfthome");
    let other = NetNs::new("nftother");
    let worker = home.run_inside(|| Worker::spawn().unwrap());
    // The worker thread was spawned inside `home`; it is used from a thread inside `other`.
    let worker = other.run_inside(move || {
        worker.run("add table ip placed".into(), false).unwrap();
        worker
    });
    assert!(home.exec_ok(&["nft", "list", "tables"]).contains("placed"));
    assert_eq!(other.exec_ok(&["nft", "list", "tables"]), "");
    drop(worker);
}

#[test]
fn the_worker_serves_requests_from_several_threads_one_at_a_time() {
    if !kernel_tests_enabled("the_worker_serves_requests_from_several_threads_one_at_a_time") {
        return;
    }
    const THREADS: usize = 6;
    const ROUNDS: usize = 20;
    let ns = NetNs::new("nftwork");
    ns.nft_load(&ruleset_json(), true).unwrap();
    let worker = ns.run_inside(|| Worker::spawn().unwrap());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let worker = &worker;
            s.spawn(move || {
                worker
                    .run(format!("add table ip t{t}\nadd chain ip t{t} c{t}\n"), false)
                    .unwrap();
                for round in 0..ROUNDS {
                    let add = format!("add element ip nftproxy cluster-ips {{ 198.18.{t}.{round} }}");
                    worker.run(add, false).unwrap();
                    // Each requester gets its own listing back, never another's output.
                    let listing = worker.run(format!("list table ip t{t}"), false).unwrap();
                    assert_eq!(
                        listing,
                        format!("table ip t{t} {{\n\tchain c{t} {{\n\t}}\n}}\n"),
                        "thread {t} round {round}"
                    );
                    let refused = worker.run(format!("list table ip missing{t}"), false);
                    assert!(
                        matches!(&refused, Err(NftError::Refused { message }) if message.contains(&format!("missing{t}"))),
                        "thread {t} got {refused:?}"
                    );
                }
            });
        }
    });
    let listed = ns.nft_list_json();
    let elements = items(&listed, "set")[0]["elem"].as_array().unwrap().len();
    assert_eq!(elements, 2 + THREADS * ROUNDS, "every request ran");
    assert_eq!(items(&listed, "table").len(), 1 + THREADS);
}

#[test]
fn the_worker_handle_can_be_shared_between_threads() {
    // Compiles only if `Worker` is Send and Sync (`Context` is neither: see `context.rs`).
    fn shareable<T: Send + Sync>() {}
    shareable::<Worker>();
}
