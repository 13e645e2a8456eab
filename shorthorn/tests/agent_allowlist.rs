//! The node agent forwards exactly the SPDK methods the controller calls.
//!
//! Scans the controller's sources for calls of spdk-client methods
//! (`.bdev_lvol_delete(`...), maps each to the JSON-RPC method(s) its body
//! sends (following helpers such as `bdev_get` -> `bdev_get_bdevs`), and
//! compares with `agent_api::methods::CONTROLLER_METHODS`, the list the
//! agent admits. Fails when the controller starts calling a method the
//! agent would refuse, or stops calling one the agent still admits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn read_all(dir: &Path) -> String {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read source"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Each `pub (async) fn NAME` of `src` with its body (the text up to the next such fn).
fn functions(src: &str) -> Vec<(String, &str)> {
    let starts: Vec<usize> = src
        .match_indices("fn ")
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || !is_ident(src[..i].chars().last().unwrap_or(' ')))
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let name: String = src[i + 3..].chars().take_while(|c| is_ident(*c)).collect();
            let end = starts.get(k + 1).copied().unwrap_or(src.len());
            (name, &src[i..end])
        })
        .collect()
}

/// The first string literal of every `call*(` or `call*::<..>(` in `body`.
fn sent_methods(body: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in body.match_indices("call") {
        let mut rest = body[i + 4..].trim_start_matches(is_ident);
        if let Some(generic) = rest.strip_prefix("::<") {
            let Some(end) = generic.find(">(") else {
                continue;
            };
            rest = &generic[end + 1..];
        }
        let Some(rest) = rest.strip_prefix('(') else {
            continue;
        };
        if let Some(lit) = rest.trim_start().strip_prefix('"') {
            let name: String = lit.chars().take_while(|c| *c != '"').collect();
            if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                out.insert(name);
            }
        }
    }
    out
}

/// `.NAME(` calls in `text` for every NAME in `names`.
fn called<'a>(text: &str, names: impl Iterator<Item = &'a String>) -> BTreeSet<String> {
    names
        .filter(|n| {
            text.match_indices(&format!(".{n}")).any(|(i, m)| {
                text[i + m.len()..]
                    .trim_start_matches(|c: char| c == ':' || c == '<' || c == '>' || is_ident(c))
                    .trim_start()
                    .starts_with('(')
                    && text[i + m.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| !is_ident(c))
            })
        })
        .cloned()
        .collect()
}

#[test]
fn the_agent_admits_exactly_the_methods_the_controller_calls() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let client_src = read_all(&root.join("spdk-client/src"));
    let controller_src = read_all(&root.join("controller/src"));

    // spdk-client fn -> the methods it sends, directly or through its helpers.
    let fns = functions(&client_src);
    let mut sends: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, body) in &fns {
        sends
            .entry(name.clone())
            .or_default()
            .extend(sent_methods(body));
    }
    let names: Vec<String> = sends.keys().cloned().collect();
    let bodies: BTreeMap<&str, &str> = fns.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    loop {
        let mut grew = false;
        for name in &names {
            let body = bodies.get(name.as_str()).copied().unwrap_or_default();
            let inner: BTreeSet<String> = called(body, names.iter().filter(|n| *n != name))
                .iter()
                .flat_map(|callee| sends[callee].clone())
                .collect();
            let entry = sends.get_mut(name).expect("known fn");
            let before = entry.len();
            entry.extend(inner);
            grew |= entry.len() != before;
        }
        if !grew {
            break;
        }
    }

    let methods_called: BTreeSet<String> = called(&controller_src, names.iter())
        .iter()
        .flat_map(|f| sends[f].clone())
        .collect();
    assert!(
        methods_called.len() > 20,
        "the scan found too little ({methods_called:?}): fix the scanner"
    );
    let admitted: BTreeSet<String> = agent_api::methods::CONTROLLER_METHODS
        .iter()
        .map(|m| m.to_string())
        .collect();
    let refused: Vec<_> = methods_called.difference(&admitted).collect();
    let unused: Vec<_> = admitted.difference(&methods_called).collect();
    assert!(
        refused.is_empty(),
        "the controller calls {refused:?}, which the node agent refuses: add them to \
         agent_api::methods::CONTROLLER_METHODS with a rule in node/src/agent/policy.rs"
    );
    assert!(
        unused.is_empty(),
        "the node agent admits {unused:?}, which the controller never calls: remove them \
         from agent_api::methods::CONTROLLER_METHODS"
    );
    // The agent's allowlist is that list.
    assert_eq!(
        shorthorn_node::agent::ALLOWED_METHODS,
        agent_api::methods::CONTROLLER_METHODS
    );
}

#[test]
fn agent_and_controller_agree_on_the_default_lvstore_and_the_aio_base_name() {
    assert_eq!(
        shorthorn_node::agent::DEFAULT_LVSTORE,
        shorthorn_controller::config::DEFAULT_LVSTORE
    );
    let name = shorthorn_controller::nodes::bootstrap::aio_bdev_name("shorthorn");
    assert!(name.starts_with(agent_api::names::AIO_BASE_PREFIX));
}

#[test]
fn the_scanner_sees_a_call_it_must_see() {
    let fns = functions(
        "pub async fn a(&self) { self.call(\"x_y\", None) }\n\
         pub fn b() { self.call_unit::<()>(\"z\", None) }",
    );
    assert_eq!(fns.len(), 2);
    assert_eq!(
        sent_methods(fns[0].1).into_iter().collect::<Vec<_>>(),
        ["x_y"]
    );
    assert_eq!(
        sent_methods(fns[1].1).into_iter().collect::<Vec<_>>(),
        ["z"]
    );
    let names = ["a".to_owned(), "ab".to_owned()];
    assert_eq!(
        called("c.a(1); d.abc(2)", names.iter())
            .into_iter()
            .collect::<Vec<_>>(),
        ["a"]
    );
}
