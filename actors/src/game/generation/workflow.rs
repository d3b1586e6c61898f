//! Workflows as data. A workflow is a TOML file (what players see and pay,
//! its queue's limits, and which graph inputs its parameters fill) beside
//! the ComfyUI graph it renders, in ComfyUI's API format (JSON: node id →
//! `{class_type, inputs}`). A directory of them (`--workflows-dir`) is
//! checked whole at start: a bad file is refused with `file:line: message`
//! (an unknown node or input in a parameter mapping, a negative price, a
//! duplicate id). kokoro ships generic examples under `assets/workflows/`.
//!
//! A workflow's id is interned once (`Workflow` is a `&'static str`), so
//! jobs, queues and metrics labels carry it for free. Only ids read from
//! workflow files and from stored jobs are interned; a player's typed name
//! is looked up, never interned, so nobody can grow memory by typing.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use crate::game::data_file::{DataFileError, Pointer};

/// Longest workflow id.
pub const MAX_ID: usize = 32;

/// A workflow, by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workflow(&'static str);

impl Workflow {
    /// The workflow with this id, interned: ids come from workflow files
    /// and stored jobs only, so the set stays as small as they are.
    pub fn intern(id: &str) -> Self {
        static IDS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
        let mut ids = IDS.lock().unwrap_or_else(|p| p.into_inner());
        let ids = ids.get_or_insert_with(HashSet::new);
        if let Some(known) = ids.get(id) {
            return Self(known);
        }
        let leaked: &'static str = Box::leak(id.to_owned().into_boxed_str());
        ids.insert(leaked);
        Self(leaked)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// The workflow's slot in a cluster of `slots` slots, whose owner runs
    /// its generation queue (so a workflow's renderer concurrency is the
    /// cluster's): FNV-1a of its id, the same on every node and version.
    pub fn slot(self, slots: u32) -> u32 {
        let hash = self.0.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        hash % slots.max(1)
    }
}

impl std::fmt::Display for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Whether an id is well formed: lowercase letters, digits, `_` and `-`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    Video,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
        }
    }
}

/// What a player (or kokoro) fills in a workflow's graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Param {
    Prompt,
    NegativePrompt,
    Seed,
    Width,
    Height,
    Image,
}

impl Param {
    pub const ALL: [Param; 6] = [
        Param::Prompt,
        Param::NegativePrompt,
        Param::Seed,
        Param::Width,
        Param::Height,
        Param::Image,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prompt => "prompt",
            Self::NegativePrompt => "negative_prompt",
            Self::Seed => "seed",
            Self::Width => "width",
            Self::Height => "height",
            Self::Image => "image",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Where a parameter goes in the graph: `graph[node].inputs[input]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub node: String,
    pub input: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowDef {
    pub id: Workflow,
    /// What players see.
    pub name: String,
    pub kind: Kind,
    /// Credits, before any discount.
    pub price: i64,
    /// Jobs a player may run free each day (their own day), after the trial.
    pub daily_free: u32,
    /// Whether a job needs an input image.
    pub takes_image: bool,
    /// Jobs rendering at once.
    pub concurrency: usize,
    /// Jobs waiting or running; beyond this, `generate` answers busy.
    pub queue_length: usize,
    /// A render taking longer fails (and is refunded).
    pub time_limit: Duration,
    pub params: BTreeMap<Param, Slot>,
    /// The ComfyUI graph, API format.
    pub graph: Arc<Value>,
}

/// Every workflow a server offers, in id order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workflows {
    defs: Vec<Arc<WorkflowDef>>,
}

macro_rules! shipped {
    ($id:literal) => {
        (
            concat!($id, ".toml"),
            include_str!(concat!("../../../../assets/workflows/", $id, ".toml")),
            concat!($id, ".json"),
            include_str!(concat!("../../../../assets/workflows/", $id, ".json")),
        )
    };
}

/// The workflows shipped with kokoro: (file name, TOML, graph file name, graph).
const SHIPPED: &[(&str, &str, &str, &str)] = &[
    shipped!("image"),
    shipped!("upscale"),
    shipped!("video_zoom"),
    shipped!("video_pan"),
    shipped!("video_loop"),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    id: Spanned<String>,
    name: Spanned<String>,
    kind: Spanned<String>,
    price: Spanned<i64>,
    #[serde(default = "zero")]
    daily_free: Spanned<i64>,
    #[serde(default)]
    takes_image: bool,
    #[serde(default = "one")]
    concurrency: Spanned<i64>,
    #[serde(default = "hundred")]
    queue_length: Spanned<i64>,
    #[serde(default = "two_minutes")]
    time_limit_secs: Spanned<i64>,
    graph: Spanned<String>,
    params: Spanned<BTreeMap<String, Spanned<RawSlot>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlot {
    node: String,
    input: String,
}

fn zero() -> Spanned<i64> {
    Spanned::new(0..0, 0)
}

fn one() -> Spanned<i64> {
    Spanned::new(0..0, 1)
}

fn hundred() -> Spanned<i64> {
    Spanned::new(0..0, 100)
}

fn two_minutes() -> Spanned<i64> {
    Spanned::new(0..0, 120)
}

impl Workflows {
    /// The shipped examples.
    pub fn shipped() -> Result<Self, DataFileError> {
        let mut defs = Vec::new();
        for (file, text, graph_file, graph) in SHIPPED {
            defs.push(parse(file, text, |name| {
                (name == *graph_file)
                    .then(|| (*graph).to_owned())
                    .ok_or_else(|| format!("{name} is not shipped"))
            })?);
        }
        Self::from_defs(defs)
    }

    /// Every `*.toml` in `dir`, each with the graph file it names (relative
    /// to `dir`).
    pub fn load_dir(dir: &Path) -> Result<Self, DataFileError> {
        let unreadable = |what: &Path, e: std::io::Error| DataFileError {
            file: what.display().to_string(),
            line: 1,
            message: format!("cannot read it: {e}"),
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| unreadable(dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(DataFileError {
                file: dir.display().to_string(),
                line: 1,
                message: "no workflow (*.toml) in this directory".into(),
            });
        }
        let mut defs = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|e| unreadable(&path, e))?;
            let file = path.display().to_string();
            defs.push(parse(&file, &text, |name| {
                if name.contains("..") || Path::new(name).is_absolute() {
                    return Err(format!("graph {name:?} must be a file beside the workflow"));
                }
                std::fs::read_to_string(dir.join(name))
                    .map_err(|e| format!("cannot read graph {name}: {e}"))
            })?);
        }
        Self::from_defs(defs)
    }

    fn from_defs(defs: Vec<(WorkflowDef, String, usize)>) -> Result<Self, DataFileError> {
        let mut seen: BTreeMap<Workflow, String> = BTreeMap::new();
        let mut out = Vec::new();
        for (def, file, id_line) in defs {
            if let Some(first) = seen.get(&def.id) {
                return Err(DataFileError {
                    file,
                    line: id_line,
                    message: format!("duplicate workflow id {:?} (also in {first})", def.id.0),
                });
            }
            seen.insert(def.id, file);
            out.push(Arc::new(def));
        }
        out.sort_by_key(|d| d.id);
        Ok(Self { defs: out })
    }

    /// These workflows, each changed by `f` (tests and tools tune limits).
    pub fn each(self, f: impl Fn(&mut WorkflowDef)) -> Self {
        let defs = self
            .defs
            .into_iter()
            .map(|d| {
                let mut d = Arc::unwrap_or_clone(d);
                f(&mut d);
                Arc::new(d)
            })
            .collect();
        Self { defs }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<WorkflowDef>> {
        self.defs.iter().find(|d| d.id.0 == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<WorkflowDef>> {
        self.defs.iter()
    }

    pub fn ids(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.defs.iter().map(|d| d.id.0)
    }
}

/// One workflow file; `read_graph` fetches the graph file it names.
/// Returns the workflow, its file and the line of its id.
fn parse(
    file: &str,
    text: &str,
    read_graph: impl Fn(&str) -> Result<String, String>,
) -> Result<(WorkflowDef, String, usize), DataFileError> {
    let at = Pointer { file, text };
    let raw: Raw = toml::from_str(text).map_err(|e| at.toml(&e))?;
    let id = raw.id.get_ref();
    if !valid_id(id) {
        return Err(at.at(
            raw.id.span().start,
            format!("id must be 1 to {MAX_ID} lowercase letters, digits, _ or -"),
        ));
    }
    let name = raw.name.get_ref().trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(at.at(raw.name.span().start, "name must be 1 to 64 characters"));
    }
    let kind = match raw.kind.get_ref().as_str() {
        "image" => Kind::Image,
        "video" => Kind::Video,
        other => {
            return Err(at.at(
                raw.kind.span().start,
                format!("kind must be \"image\" or \"video\", not {other:?}"),
            ))
        }
    };
    let price = *raw.price.get_ref();
    if !(0..=1_000_000).contains(&price) {
        return Err(at.at(
            raw.price.span().start,
            "price must be 0 to 1000000 credits (not below zero)",
        ));
    }
    let ranged = |v: &Spanned<i64>, what: &str, min: i64, max: i64| {
        let n = *v.get_ref();
        if (min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(at.at(v.span().start, format!("{what} must be {min} to {max}")))
        }
    };
    let daily_free = ranged(&raw.daily_free, "daily_free", 0, 1000)? as u32;
    let concurrency = ranged(&raw.concurrency, "concurrency", 1, 64)? as usize;
    let queue_length = ranged(&raw.queue_length, "queue_length", 1, 100_000)? as usize;
    let time_limit = ranged(&raw.time_limit_secs, "time_limit_secs", 1, 86_400)? as u64;

    let graph_text =
        read_graph(raw.graph.get_ref()).map_err(|m| at.at(raw.graph.span().start, m))?;
    let graph_file = raw.graph.get_ref();
    let graph: Value = serde_json::from_str(&graph_text).map_err(|e| DataFileError {
        file: graph_file.clone(),
        line: e.line(),
        message: e.to_string(),
    })?;
    let Some(nodes) = graph.as_object().filter(|n| !n.is_empty()) else {
        return Err(at.at(
            raw.graph.span().start,
            format!("{graph_file} must be a ComfyUI graph in API format: {{node id: {{class_type, inputs}}}}"),
        ));
    };
    for (node, body) in nodes {
        if !body["class_type"].is_string() || !body["inputs"].is_object() {
            return Err(at.at(
                raw.graph.span().start,
                format!("{graph_file}: node {node:?} needs class_type and inputs (export the graph with \"Save (API Format)\")"),
            ));
        }
    }

    let mut params = BTreeMap::new();
    for (p, slot) in raw.params.get_ref() {
        let pos = slot.span().start;
        let param = Param::parse(p).ok_or_else(|| {
            at.at(
                pos,
                format!(
                    "unknown parameter {p:?}; known: {}",
                    Param::ALL.map(Param::as_str).join(", ")
                ),
            )
        })?;
        let s = slot.get_ref();
        let Some(node) = nodes.get(&s.node) else {
            return Err(at.at(pos, format!("{p}: no node {:?} in {graph_file}", s.node)));
        };
        if node["inputs"].get(&s.input).is_none() {
            return Err(at.at(
                pos,
                format!(
                    "{p}: node {:?} ({}) has no input {:?}",
                    s.node,
                    node["class_type"].as_str().unwrap_or("?"),
                    s.input
                ),
            ));
        }
        params.insert(
            param,
            Slot {
                node: s.node.clone(),
                input: s.input.clone(),
            },
        );
    }
    if !params.contains_key(&Param::Prompt) && !raw.takes_image {
        return Err(at.at(
            raw.params.span().start,
            "a workflow needs a prompt parameter, an input image, or both",
        ));
    }
    if raw.takes_image != params.contains_key(&Param::Image) {
        return Err(at.at(
            raw.params.span().start,
            "takes_image = true needs an image parameter, and an image parameter needs takes_image = true",
        ));
    }
    let def = WorkflowDef {
        id: Workflow::intern(id),
        name: name.to_owned(),
        kind,
        price,
        daily_free,
        takes_image: raw.takes_image,
        concurrency,
        queue_length,
        time_limit: Duration::from_secs(time_limit),
        params,
        graph: Arc::new(graph),
    };
    let line = crate::game::data_file::line_of(text, raw.id.span().start);
    Ok((def, file.to_owned(), line))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: &str = r#"{
  "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20}},
  "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}}
}"#;

    /// Nodes of different versions must agree on where a queue runs: the
    /// slot is FNV-1a of the id (these values are that hash, worked out
    /// apart), never a hasher that may change.
    #[test]
    fn a_workflows_slot_is_the_same_on_every_node_and_version() {
        assert_eq!(Workflow::intern("image").slot(16), 10);
        assert_eq!(Workflow::intern("image").slot(1024), 506);
        assert_eq!(Workflow::intern("video_loop").slot(1024), 519);
        assert_eq!(Workflow::intern("image").slot(0), 0, "no slots: slot 0");
    }

    fn one(toml: &str) -> Result<WorkflowDef, DataFileError> {
        parse("w.toml", toml, |_| Ok(GRAPH.to_owned())).map(|(d, _, _)| d)
    }

    const GOOD: &str = "id = \"fox\"\nname = \"Fox\"\nkind = \"image\"\nprice = 10\ngraph = \"g.json\"\n[params]\nprompt = { node = \"6\", input = \"text\" }\nseed = { node = \"3\", input = \"seed\" }\n";

    #[test]
    fn the_shipped_workflows_load_and_are_generic() {
        let w = Workflows::shipped().unwrap();
        let ids: Vec<_> = w.ids().collect();
        assert_eq!(
            ids,
            ["image", "upscale", "video_loop", "video_pan", "video_zoom"]
        );
        let image = w.get("image").unwrap();
        assert_eq!(
            (image.price, image.daily_free, image.kind),
            (10, 5, Kind::Image)
        );
        assert!(w
            .iter()
            .filter(|d| d.kind == Kind::Video)
            .all(|d| d.takes_image));
    }

    #[test]
    fn a_good_file_maps_its_parameters() {
        let d = one(GOOD).unwrap();
        assert_eq!(d.id.as_str(), "fox");
        assert_eq!(
            d.params[&Param::Prompt],
            Slot {
                node: "6".into(),
                input: "text".into()
            }
        );
        assert_eq!((d.concurrency, d.queue_length), (1, 100));
    }

    #[test]
    fn bad_files_say_where_and_why() {
        let cases = [
            (
                GOOD.replace("price = 10", "price = -1"),
                4,
                "not below zero",
            ),
            (
                GOOD.replace("node = \"6\"", "node = \"99\""),
                7,
                "no node \"99\"",
            ),
            (
                GOOD.replace("input = \"text\"", "input = \"txt\""),
                7,
                "has no input \"txt\"",
            ),
            (
                GOOD.replace("kind = \"image\"", "kind = \"gif\""),
                3,
                "kind must be",
            ),
            (
                GOOD.replace("id = \"fox\"", "id = \"Fox!\""),
                1,
                "lowercase",
            ),
            (
                GOOD.replace("seed =", "steps ="),
                8,
                "unknown parameter \"steps\"",
            ),
            (format!("colour = 1\n{GOOD}"), 1, "unknown field"),
            (
                GOOD.replace(
                    "graph = \"g.json\"\n",
                    "graph = \"g.json\"\ntakes_image = true\n",
                ),
                7,
                "needs an image parameter",
            ),
        ];
        for (text, line, says) in cases {
            let e = one(&text).unwrap_err();
            assert_eq!((e.file.as_str(), e.line), ("w.toml", line), "{e}");
            assert!(e.message.contains(says), "{e}");
        }
    }

    #[test]
    fn a_duplicate_id_names_both_files() {
        let a = parse("a.toml", GOOD, |_| Ok(GRAPH.to_owned())).unwrap();
        let b = parse("b.toml", GOOD, |_| Ok(GRAPH.to_owned())).unwrap();
        let e = Workflows::from_defs(vec![a, b]).unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("b.toml", 1));
        assert!(
            e.message
                .contains("duplicate workflow id \"fox\" (also in a.toml)"),
            "{e}"
        );
    }

    #[test]
    fn a_broken_graph_is_refused_on_its_own_line() {
        let e = parse("w.toml", GOOD, |_| Ok("{\n  \"3\": {\n  oops".to_owned())).unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("g.json", 3), "{e}");
    }

    #[test]
    fn a_directory_loads_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Workflows::load_dir(dir.path()).is_err());
        std::fs::write(dir.path().join("fox.toml"), GOOD).unwrap();
        std::fs::write(dir.path().join("g.json"), GRAPH).unwrap();
        let w = Workflows::load_dir(dir.path()).unwrap();
        assert_eq!(w.ids().collect::<Vec<_>>(), ["fox"]);
        std::fs::write(dir.path().join("g.json"), "[]").unwrap();
        let e = Workflows::load_dir(dir.path()).unwrap_err();
        assert!(e.message.contains("API format"), "{e}");
    }

    #[test]
    fn ids_intern_to_one_address() {
        let a = Workflow::intern("same_id");
        let b = Workflow::intern(&String::from("same_id"));
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
    }
}
