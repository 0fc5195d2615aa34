//! The module graph has no cycle: each module of `netlib/src` uses only modules listed before
//! it in the `# Layout` section of `lib.rs` (bottom up). Reads the sources as text.

use std::collections::BTreeMap;
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
    // A folder's files (`transport/ws.rs`, `server/local.rs`) count as their module's.
    let folders = ["transport", "server", "client"];
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
                Some(folder) => (*folder).to_owned(),
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
