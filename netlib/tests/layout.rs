//! The module graph has no cycle: each module of `netlib/src` uses only modules listed before
//! it in the `# Layout` section of `lib.rs` (bottom up), and each file of the WebSocket
//! transport (`transport/ws/`) uses exactly the files its `# Layout` section in `ws/mod.rs`
//! says, all listed before it. Reads the sources as text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module names in the order the layout lists them.
fn layout_order(lib: &str) -> Vec<String> {
    let section = lib
        .split("//! # Layout")
        .nth(1)
        .expect("lib.rs has a # Layout section");
    let section = section.split("//! # ").next().unwrap();
    let mut order = Vec::new();
    for line in section.lines() {
        // Modules are named in backticks: [`name`] (public) or `name` (private).
        for part in line.split('`').skip(1).step_by(2) {
            let file = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src")
                .join(format!("{part}.rs"));
            let known = part == "transport" || (!part.contains(['.', ':', ' ']) && file.exists());
            if known && !order.iter().any(|m: &String| m == part) {
                order.push(part.to_owned());
            }
        }
    }
    order
}

/// `crate::x` paths used in a file's code (comments and tests left out).
fn uses(src: &str) -> Vec<String> {
    let code = src.split("#[cfg(test)]").next().unwrap();
    let mut out = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let name: String = line[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn no_module_uses_one_listed_after_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = layout_order(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    for m in [
        "session",
        "hub",
        "dispatch",
        "handler",
        "server",
        "client",
        "transport",
    ] {
        assert!(order.iter().any(|o| o == m), "layout lists {m}: {order:?}");
    }
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    // A folder's files (`transport/tcp.rs`, `transport/ws/stream.rs`, `server/local.rs`) count
    // as their module's.
    let folders = ["transport", "transport/ws", "server", "client"];
    let entries = folders
        .iter()
        .map(|f| std::fs::read_dir(src.join(f)).unwrap())
        .fold(
            Box::new(std::fs::read_dir(&src).unwrap()) as Box<dyn Iterator<Item = _>>,
            |all, f| Box::new(all.chain(f)),
        );
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let parent = path.parent().unwrap();
            let module = match folders.iter().find(|f| parent.ends_with(f)) {
                Some(folder) => folder.split('/').next().unwrap().to_owned(),
                None => path.file_stem().unwrap().to_string_lossy().into_owned(),
            };
            files
                .entry(module)
                .or_default()
                .push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    let pos = |m: &str| order.iter().position(|o| o == m);
    let mut checked = 0;
    for (module, text) in &files {
        let Some(here) = pos(module) else { continue };
        for used in uses(text) {
            if let Some(there) = pos(&used) {
                assert!(
                    there <= here,
                    "{module} uses {used}, which the layout lists after it: a cycle or a wrong layout"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "only {checked} imports were checked");
}

/// The files of `transport/ws/` in the order its `# Layout` lists them, each with the files
/// it says it uses: `- `name` (uses `a`, `b`): ...`.
fn ws_layout(module_docs: &str) -> Vec<(String, BTreeSet<String>)> {
    let section = module_docs
        .split("//! # Layout")
        .nth(1)
        .expect("ws/mod.rs has a # Layout section");
    let mut out = Vec::new();
    for line in section.lines() {
        let Some(item) = line.strip_prefix("//! - `") else {
            continue;
        };
        let (name, rest) = item.split_once('`').unwrap();
        let mut deps = BTreeSet::new();
        if let Some(list) = rest.strip_prefix(" (uses ") {
            let list = list.split(')').next().unwrap();
            deps.extend(list.split('`').skip(1).step_by(2).map(str::to_owned));
        }
        out.push((name.to_owned(), deps));
    }
    out
}

/// The sibling files a `transport/ws/` file's code (tests left out) uses through `super::`;
/// panics on a path through the parent module (`crate::transport::ws::`, `super::super`),
/// which would hide a dependency behind a re-export.
fn ws_uses(src: &str, files: &BTreeSet<String>) -> BTreeSet<String> {
    let code = src.split("#[cfg(test)]").next().unwrap();
    let mut out = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        assert!(
            !line.contains("transport::ws::") && !line.contains("super::super"),
            "a ws file names a sibling through the ws module: {line}"
        );
        for (i, _) in line.match_indices("super::") {
            let rest = &line[i + 7..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|p| p.trim().split("::").next().unwrap())
                    .collect(),
                None => vec![rest],
            };
            for name in names {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if files.contains(&name) {
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn websocket_files_use_only_the_files_listed_before_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/transport/ws");
    let layout = ws_layout(&std::fs::read_to_string(dir.join("mod.rs")).unwrap());
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "rs") && stem != "mod" {
            on_disk.insert(stem);
        }
    }
    let listed: BTreeSet<String> = layout.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(
        listed, on_disk,
        "the layout lists every file of ws/, and only those"
    );
    for (at, (file, declared)) in layout.iter().enumerate() {
        let before: BTreeSet<String> = layout[..at].iter().map(|(n, _)| n.clone()).collect();
        for dep in declared {
            assert!(
                before.contains(dep),
                "ws/{file}.rs is said to use {dep}, which the layout lists after it: a cycle"
            );
        }
        let text = std::fs::read_to_string(dir.join(format!("{file}.rs"))).unwrap();
        let used = ws_uses(&text, &on_disk);
        assert_eq!(
            &used, declared,
            "ws/{file}.rs uses {used:?}; the layout in ws/mod.rs says {declared:?}"
        );
    }
    // The HTTP side asks the options and nothing of the WebSocket itself.
    let http = &layout.iter().find(|(n, _)| n == "http").unwrap().1;
    assert_eq!(http.iter().collect::<Vec<_>>(), ["options"]);
}
