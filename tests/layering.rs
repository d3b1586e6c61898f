//! The arrows of `actors/src` run one way: primitives (ids, money, days,
//! reply, args) ← each feature's data ← the aggregates (`UserState`,
//! `Write`, `Draft`) ← the features' rules ← the command that gathers them
//! ← the runtime. This test reads the source and fails on any circle of
//! files importing each other, and on any game file reaching up into the
//! runtime, so the layering cannot quietly grow back.
//!
//! One pair is allowed and named: a player's actor posts mail to other
//! players' actors through the registry that spawns it (Alice Ryhl's actor
//! and its handle), which is one runtime part split over two files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Every `.rs` file under `root`, by its module path (`game/arena/entry`).
fn modules(root: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("actors/src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(root)
                    .expect("under root")
                    .with_extension("");
                let mut module: Module = rel
                    .iter()
                    .map(|s| s.to_string_lossy().into_owned())
                    .collect();
                if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                    module.pop();
                }
                out.insert(module, path);
            }
        }
    }
    out
}

/// The paths a file names after `crate::`, with `{a, b::c}` groups spread
/// out; tests at the end of the file (`#[cfg(test)]`) are not counted.
fn crate_paths(source: &str) -> Vec<Module> {
    let source = source.split("#[cfg(test)]").next().unwrap_or(source);
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let mut prefix: Module = Vec::new();
        let mut s = rest;
        loop {
            let ident: String = s
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if ident.is_empty() {
                break;
            }
            s = &s[ident.len()..];
            prefix.push(ident);
            if let Some(next) = s.strip_prefix("::") {
                s = next;
            } else {
                break;
            }
        }
        if let Some(group) = s.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let mut path = prefix.clone();
                path.extend(
                    item.trim()
                        .split("::")
                        .filter(|p| !p.is_empty())
                        .map(|p| p.trim().to_string()),
                );
                out.push(path);
            }
        } else {
            out.push(prefix);
        }
    }
    out
}

/// The module a path lands in: its longest prefix that is a file.
fn resolve<'a>(modules: &'a BTreeMap<Module, PathBuf>, path: &[String]) -> Option<&'a Module> {
    (1..=path.len())
        .rev()
        .find_map(|n| modules.get_key_value(&path[..n]).map(|(k, _)| k))
}

fn imports() -> BTreeMap<Module, BTreeSet<Module>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("actors/src");
    let modules = modules(&root);
    modules
        .iter()
        .map(|(module, path)| {
            let source = std::fs::read_to_string(path).expect("a source file");
            let to = crate_paths(&source)
                .iter()
                .filter_map(|p| resolve(&modules, p))
                .filter(|m| *m != module)
                .cloned()
                .collect();
            (module.clone(), to)
        })
        .collect()
}

/// Tarjan's strongly connected components with more than one file.
fn circles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<BTreeSet<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        out: Vec<BTreeSet<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Module) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in &self.graph[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = BTreeSet::new();
                while let Some(w) = self.stack.pop() {
                    component.insert(w.join("/"));
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.out.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.out
}

#[test]
fn no_files_of_the_game_or_runtime_import_each_other_in_a_circle() {
    let graph = imports();
    assert!(
        graph.len() > 40,
        "the walk found the source ({} files)",
        graph.len()
    );
    let allowed: BTreeSet<String> = ["registry", "user_actor"].map(String::from).into();
    let found = circles(&graph);
    let unexpected: Vec<_> = found.iter().filter(|c| **c != allowed).collect();
    assert!(
        unexpected.is_empty(),
        "files that import each other in a circle: {unexpected:?}"
    );
}

#[test]
fn the_game_reaches_no_higher_than_the_player_state_and_its_writes() {
    // What the game and its primitives may name: each other, and nothing of
    // the runtime (actors, group commit, storage, the queues, config).
    let below: BTreeSet<&str> = [
        "game", "domain", "ids", "args", "reply", "state", "writeset",
    ]
    .into();
    let graph = imports();
    let mut reaching_up = Vec::new();
    for (module, to) in &graph {
        // The crate root (`lib.rs`, the empty path) is the top of the crate.
        let layer = |m: &Module| m.first().map_or("lib", String::as_str).to_owned();
        // `game/mod.rs` is the gatherer: it dispatches a `CommandKind` to
        // the feature that decides it, so it sits with the command enum.
        if !below.contains(layer(module).as_str()) || module.len() == 1 && module[0] == "game" {
            continue;
        }
        for target in to {
            if !below.contains(layer(target).as_str()) {
                reaching_up.push(format!("{} -> {}", module.join("/"), target.join("/")));
            }
        }
    }
    assert!(
        reaching_up.is_empty(),
        "game files importing the runtime: {reaching_up:#?}"
    );
}

#[test]
fn the_reader_sees_a_circle_when_there_is_one() {
    // The walk itself, on a made-up graph: a test of the test.
    let m = |s: &str| vec![s.to_string()];
    let graph: BTreeMap<Module, BTreeSet<Module>> = [
        (m("a"), [m("b")].into()),
        (m("b"), [m("c")].into()),
        (m("c"), [m("a")].into()),
        (m("d"), [m("a")].into()),
    ]
    .into();
    let found = circles(&graph);
    assert_eq!(found, vec![["a", "b", "c"].map(String::from).into()]);
    let paths =
        crate_paths("use crate::game::{draft::Draft, arena};\nlet x = crate::ids::UserKey::new();");
    assert_eq!(
        paths,
        vec![
            vec!["game", "draft", "Draft"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>(),
            vec!["game".into(), "arena".into()],
            vec!["ids".into(), "UserKey".into(), "new".into()],
        ]
    );
}
