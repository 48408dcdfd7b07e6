//! Descriptions and diagrams (DIAG-1…5) and the structural fingerprint (CKP-3).
//!
//! [`Description`] is the serializable structure of a cadence (what the CLI's `diagram` and
//! `validate` read); [`Description::to_mermaid`] and [`Description::to_dot`] render it. Node ids
//! are positional (`start`, `m0`, `m1_2`, `m3_fork`, child content prefixed `m4__`), never
//! derived from names, so any name renders (DIAG-2, DIAG-3).
//!
//! One deliberate deviation: the end node's id is `finish`, not `end` — a lowercase `end` is a
//! keyword in Mermaid flowcharts and breaks the diagram.
//!
//! ```
//! use cadence_core::{BoxError, Cadence, note};
//! let c = Cadence::<u8>::new("tiny")
//!     .then("only", note::from_fn(|_: &mut u8| Box::pin(async { Ok::<_, BoxError>(()) })))
//!     .build()
//!     .unwrap();
//! let m = c.to_mermaid();
//! assert!(m.starts_with("flowchart TD\n"));
//! assert!(m.contains(r#"m0["only"]"#));
//! ```

use std::fmt::Write as _;

use crate::cadence::{CompiledNote, Inner, Measure, MeasureBody};
use crate::handler::OnError;
use crate::hash::Fnv128;
use crate::hook::MeasureKind;

/// The serializable structure of a cadence (DIAG-5). Round-trips through JSON unchanged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Description {
    /// Format version, 1.
    pub version: u32,
    /// The cadence's name.
    pub name: String,
    /// The structural fingerprint (CKP-3).
    pub fingerprint: String,
    /// Whether the cadence checkpoints.
    pub checkpointing: bool,
    /// The `on_error` mode, if a handler is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// The measures, in order.
    pub measures: Vec<MeasureDescription>,
}

/// One measure of a [`Description`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct MeasureDescription {
    /// What kind of measure.
    pub kind: MeasureKind,
    /// Its name.
    pub name: String,
    /// Its notes (`then`: one; `sequence`/`sync`: the members).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<NoteDescription>,
    /// The merge strategy of a `sync`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<String>,
    /// The condition's or selector's label, for `split` and `route`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Branches: `true`/`false` for a split, one per key for a route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteDescription>,
    /// A route's default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Vec<NoteDescription>>,
    /// A child measure's cadence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<Box<Description>>,
}

/// One branch of a split or route.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RouteDescription {
    /// The key (`true`/`false` for splits).
    pub key: String,
    /// The branch's notes.
    #[serde(default)]
    pub notes: Vec<NoteDescription>,
}

/// One note of a [`Description`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct NoteDescription {
    /// The note's name.
    pub name: String,
    /// One-line policy summaries (`retry(3)`, `timeout(5s)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Whether it runs on the blocking pool.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocking: bool,
}

/// Layout direction of a diagram (DIAG-4).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Top to bottom.
    #[default]
    TopDown,
    /// Left to right.
    LeftRight,
    /// Bottom to top.
    BottomTop,
    /// Right to left.
    RightLeft,
}

impl Direction {
    fn mermaid(self) -> &'static str {
        match self {
            Direction::TopDown => "TD",
            Direction::LeftRight => "LR",
            Direction::BottomTop => "BT",
            Direction::RightLeft => "RL",
        }
    }

    fn dot(self) -> &'static str {
        match self {
            Direction::TopDown => "TB",
            Direction::LeftRight => "LR",
            Direction::BottomTop => "BT",
            Direction::RightLeft => "RL",
        }
    }
}

impl std::str::FromStr for Direction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "TD" | "TB" => Ok(Direction::TopDown),
            "LR" => Ok(Direction::LeftRight),
            "BT" => Ok(Direction::BottomTop),
            "RL" => Ok(Direction::RightLeft),
            other => Err(format!("unknown direction '{other}': use TD, LR, BT or RL")),
        }
    }
}

fn describe_note<S>(n: &CompiledNote<S>) -> NoteDescription {
    NoteDescription {
        name: n.name.to_string(),
        policies: n.policies.summaries(),
        blocking: n.body.is_blocking(),
    }
}

fn describe_notes<S>(ns: &[CompiledNote<S>]) -> Vec<NoteDescription> {
    ns.iter().map(describe_note).collect()
}

fn describe_measures<S>(measures: &[Measure<S>]) -> Vec<MeasureDescription> {
    measures
        .iter()
        .map(|m| {
            let mut d = MeasureDescription {
                kind: m.kind,
                name: m.name.to_string(),
                notes: Vec::new(),
                merge: None,
                condition: None,
                routes: Vec::new(),
                default: None,
                child: None,
            };
            match &m.body {
                MeasureBody::Note(n) => d.notes = vec![describe_note(n)],
                MeasureBody::Sequence(ns) => d.notes = describe_notes(ns),
                MeasureBody::Sync {
                    notes, strategy, ..
                } => {
                    d.notes = describe_notes(notes);
                    d.merge = Some(strategy.as_str().to_owned());
                }
                MeasureBody::Split {
                    cond,
                    if_true,
                    if_false,
                } => {
                    d.condition = Some(cond.label().to_owned());
                    d.routes = vec![
                        RouteDescription {
                            key: "true".into(),
                            notes: describe_notes(if_true),
                        },
                        RouteDescription {
                            key: "false".into(),
                            notes: describe_notes(if_false),
                        },
                    ];
                }
                MeasureBody::Route {
                    selector,
                    routes,
                    default,
                } => {
                    d.condition = Some(selector.label().to_owned());
                    d.routes = routes
                        .iter()
                        .map(|(k, ns)| RouteDescription {
                            key: k.to_string(),
                            notes: describe_notes(ns),
                        })
                        .collect();
                    d.default = default.as_deref().map(describe_notes);
                }
                MeasureBody::Child(c) => d.child = Some(Box::new(c.describe())),
            }
            d
        })
        .collect()
}

/// CKP-3: one line `<depth>:<kind>:<name>` per measure, note and branch key, depth-first in
/// declaration order, joined by `\n`, hashed with GEN-4. A `then` measure is one line (its
/// note's own name is not structure); a child measure is one line.
pub(crate) fn fingerprint_lines(measures: &[MeasureDescription]) -> String {
    let mut out = String::new();
    let mut line = |depth: u32, kind: &str, name: &str| {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = write!(out, "{depth}:{kind}:{name}");
    };
    for m in measures {
        line(0, m.kind.as_str(), &m.name);
        match m.kind {
            MeasureKind::Sequence | MeasureKind::Sync => {
                for n in &m.notes {
                    line(1, "note", &n.name);
                }
            }
            MeasureKind::Split | MeasureKind::Route => {
                for r in &m.routes {
                    line(1, "key", &r.key);
                    for n in &r.notes {
                        line(2, "note", &n.name);
                    }
                }
                if let Some(d) = &m.default {
                    line(1, "key", "*");
                    for n in d {
                        line(2, "note", &n.name);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

pub(crate) fn fingerprint_of<S>(measures: &[Measure<S>]) -> String {
    fingerprint_of_description(&describe_measures(measures))
}

pub(crate) fn fingerprint_of_description(measures: &[MeasureDescription]) -> String {
    let mut h = Fnv128::new();
    h.write(fingerprint_lines(measures).as_bytes());
    h.hex()
}

pub(crate) fn describe<S>(inner: &Inner<S>) -> Description {
    Description {
        version: 1,
        name: inner.name.to_string(),
        fingerprint: inner.fingerprint.clone(),
        checkpointing: inner.checkpoint.is_some(),
        on_error: inner.on_error.as_ref().map(|(_, mode)| *mode),
        measures: describe_measures(&inner.measures),
    }
}

/// DIAG-3: Mermaid label text.
pub(crate) fn mermaid_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("<br/>"),
            c if c.is_ascii_alphanumeric() || " _-.,:;/()[]{}'!?+*=@".contains(c) => out.push(c),
            c => {
                let _ = write!(out, "#{};", c as u32);
            }
        }
    }
    out
}

/// DIAG-3: DOT label text.
pub(crate) fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Shape {
    Terminal,
    Note,
    Decision,
    Junction,
}

/// A renderer-neutral graph: nodes, edges and clusters, filled depth-first.
#[derive(Default)]
struct Graph {
    /// (id, label, shape, cluster index)
    nodes: Vec<(String, String, Shape, Option<usize>)>,
    /// (from, to, label)
    edges: Vec<(String, String, Option<String>)>,
    /// (id, label, parent cluster)
    clusters: Vec<(String, String, Option<usize>)>,
}

impl Graph {
    fn node(&mut self, id: String, label: &str, shape: Shape, cluster: Option<usize>) -> String {
        self.nodes
            .push((id.clone(), label.to_owned(), shape, cluster));
        id
    }

    fn edge(&mut self, from: &str, to: &str, label: Option<&str>) {
        self.edges
            .push((from.to_owned(), to.to_owned(), label.map(str::to_owned)));
    }

    fn cluster(&mut self, id: String, label: &str, parent: Option<usize>) -> usize {
        self.clusters.push((id, label.to_owned(), parent));
        self.clusters.len() - 1
    }

    /// Chains notes under `prefix_<j>` ids; returns (first, last) or None when empty.
    fn chain(
        &mut self,
        ids: impl Iterator<Item = String>,
        notes: &[NoteDescription],
        cluster: Option<usize>,
    ) -> Option<(String, String)> {
        let mut first = None;
        let mut last: Option<String> = None;
        for (id, n) in ids.zip(notes) {
            let id = self.node(id, &note_label(n), Shape::Note, cluster);
            if let Some(prev) = &last {
                self.edge(prev, &id, None);
            }
            first.get_or_insert_with(|| id.clone());
            last = Some(id);
        }
        first.zip(last)
    }

    /// Lays out a cadence's measures between `<p>start` and `<p>finish`.
    fn cadence(&mut self, d: &Description, p: &str, cluster: Option<usize>) -> (String, String) {
        let start = self.node(format!("{p}start"), "start", Shape::Terminal, cluster);
        let mut tail = start.clone();
        for (i, m) in d.measures.iter().enumerate() {
            let id = format!("{p}m{i}");
            let (entry, exit) = self.measure(m, &id, cluster);
            self.edge(&tail, &entry, None);
            tail = exit;
        }
        let finish = self.node(format!("{p}finish"), "end", Shape::Terminal, cluster);
        self.edge(&tail, &finish, None);
        (start, finish)
    }

    fn measure(
        &mut self,
        m: &MeasureDescription,
        id: &str,
        cluster: Option<usize>,
    ) -> (String, String) {
        match m.kind {
            MeasureKind::Note => {
                let label = match m.notes.first() {
                    Some(n) if n.name != m.name || !n.policies.is_empty() => {
                        let mut l = m.name.clone();
                        if !n.policies.is_empty() {
                            l.push('\n');
                            l.push_str(&n.policies.join(", "));
                        }
                        l
                    }
                    _ => m.name.clone(),
                };
                let n = self.node(id.to_owned(), &label, Shape::Note, cluster);
                (n.clone(), n)
            }
            MeasureKind::Sequence => {
                let c = self.cluster(id.to_owned(), &m.name, cluster);
                let ids = (0..).map(|j| format!("{id}_{j}"));
                match self.chain(ids, &m.notes, Some(c)) {
                    Some(ends) => ends,
                    None => {
                        let n = self.node(format!("{id}_0"), &m.name, Shape::Junction, Some(c));
                        (n.clone(), n)
                    }
                }
            }
            MeasureKind::Sync => {
                let c = self.cluster(id.to_owned(), &m.name, cluster);
                let label = match &m.merge {
                    Some(merge) => format!("{}\n{merge}", m.name),
                    None => m.name.clone(),
                };
                let fork = self.node(format!("{id}_fork"), &label, Shape::Junction, Some(c));
                let join = self.node(format!("{id}_join"), "join", Shape::Junction, Some(c));
                for (j, n) in m.notes.iter().enumerate() {
                    let nid = self.node(format!("{id}_{j}"), &note_label(n), Shape::Note, Some(c));
                    self.edge(&fork, &nid, None);
                    self.edge(&nid, &join, None);
                }
                (fork, join)
            }
            MeasureKind::Split | MeasureKind::Route => {
                let label = format!(
                    "{}\n{}",
                    m.name,
                    m.condition.as_deref().unwrap_or("condition")
                );
                let decision = self.node(id.to_owned(), &label, Shape::Decision, cluster);
                let join = self.node(format!("{id}_join"), " ", Shape::Junction, cluster);
                let split = m.kind == MeasureKind::Split;
                let mut branches: Vec<(&str, &[NoteDescription], usize)> = m
                    .routes
                    .iter()
                    .enumerate()
                    .map(|(b, r)| (r.key.as_str(), r.notes.as_slice(), b))
                    .collect();
                if let Some(d) = &m.default {
                    branches.push(("*", d.as_slice(), branches.len()));
                }
                for (key, notes, b) in branches {
                    let edge_label = match (split, key) {
                        (true, "true") => "yes",
                        (true, _) => "no",
                        (false, "*") => "default",
                        (false, k) => k,
                    };
                    let ids = (0..).map(|j| format!("{id}_{b}_{j}"));
                    match self.chain(ids, notes, cluster) {
                        Some((first, last)) => {
                            self.edge(&decision, &first, Some(edge_label));
                            self.edge(&last, &join, None);
                        }
                        None => self.edge(&decision, &join, Some(edge_label)),
                    }
                }
                (decision, join)
            }
            MeasureKind::Child => {
                let c = self.cluster(id.to_owned(), &m.name, cluster);
                match &m.child {
                    Some(child) => self.cadence(child, &format!("{id}__"), Some(c)),
                    None => {
                        let n = self.node(format!("{id}__start"), &m.name, Shape::Note, Some(c));
                        (n.clone(), n)
                    }
                }
            }
        }
    }
}

fn note_label(n: &NoteDescription) -> String {
    let mut l = n.name.clone();
    if !n.policies.is_empty() {
        l.push('\n');
        l.push_str(&n.policies.join(", "));
    }
    l
}

impl Description {
    fn graph(&self) -> Graph {
        let mut g = Graph::default();
        g.cadence(self, "", None);
        g
    }

    /// Applies the structural rules of DSL-4/DSL-5 to a description (DSL-6, CLI-5): names
    /// (GEN-1), unique measure and note names, non-empty groups and branches, route keys.
    /// Policies and code are not part of a description, so their rules are not checked here.
    ///
    /// ```
    /// use cadence_core::{BoxError, Cadence, note};
    /// let c = Cadence::<u8>::new("c")
    ///     .then("a", note::from_fn(|_: &mut u8| Box::pin(async { Ok::<_, BoxError>(()) })))
    ///     .build()
    ///     .unwrap();
    /// let mut d = c.describe();
    /// assert!(d.validate().is_ok());
    /// d.measures.push(d.measures[0].clone());
    /// assert_eq!(d.validate().errors.len(), 1);
    /// ```
    pub fn validate(&self) -> crate::Validation {
        use crate::error::Problem;
        use std::collections::HashSet;
        let mut v = crate::Validation::default();
        let name_problem = |path: &str, what: &str, name: &str| -> Option<Problem> {
            if name.is_empty() {
                Some(Problem::new(
                    path,
                    format!("the {what} name is empty; give it a name"),
                ))
            } else if name.contains('/') || name.chars().any(char::is_control) {
                Some(Problem::new(
                    path,
                    format!(
                        "the {what} name {name:?} contains '/' or control characters; remove them"
                    ),
                ))
            } else {
                None
            }
        };
        let notes_check = |v: &mut crate::Validation, base: &str, notes: &[NoteDescription]| {
            let mut seen = HashSet::new();
            for n in notes {
                let path = format!("{base}/{}", n.name);
                v.errors.extend(name_problem(&path, "note", &n.name));
                if !seen.insert(n.name.as_str()) {
                    v.errors.push(Problem::new(
                        &path,
                        "two notes of this group share this name",
                    ));
                }
            }
        };
        v.errors.extend(name_problem("", "cadence", &self.name));
        if self.measures.is_empty() {
            v.errors
                .push(Problem::new("", "the cadence has no measures"));
        }
        let mut seen = HashSet::new();
        for m in &self.measures {
            v.errors.extend(name_problem(&m.name, "measure", &m.name));
            if !seen.insert(m.name.as_str()) {
                v.errors.push(Problem::new(
                    &m.name,
                    "two top-level measures share this name; names must be unique",
                ));
            }
            match m.kind {
                MeasureKind::Sequence | MeasureKind::Sync => {
                    if m.notes.is_empty() {
                        v.errors.push(Problem::new(&m.name, "the group is empty"));
                    }
                    if m.kind == MeasureKind::Sync && m.notes.len() == 1 {
                        v.warnings
                            .push(Problem::new(&m.name, "the parallel group has one note"));
                    }
                    notes_check(&mut v, &m.name, &m.notes);
                }
                MeasureKind::Split | MeasureKind::Route => {
                    if m.routes.is_empty() {
                        v.errors.push(Problem::new(&m.name, "no branches"));
                    }
                    if m.kind == MeasureKind::Split
                        && m.routes.first().is_some_and(|r| r.notes.is_empty())
                    {
                        v.errors
                            .push(Problem::new(&m.name, "the split's if_true branch is empty"));
                    }
                    let mut keys = HashSet::new();
                    for r in &m.routes {
                        let kpath = format!("{}/{}", m.name, r.key);
                        if m.kind == MeasureKind::Route && r.key == "*" {
                            v.errors.push(Problem::new(
                                &kpath,
                                "'*' is reserved for the default branch",
                            ));
                        }
                        if !keys.insert(r.key.as_str()) {
                            v.errors.push(Problem::new(&kpath, "duplicate route key"));
                        }
                        notes_check(&mut v, &kpath, &r.notes);
                    }
                    if let Some(d) = &m.default {
                        notes_check(&mut v, &format!("{}/*", m.name), d);
                    }
                }
                MeasureKind::Child => {
                    if let Some(child) = &m.child {
                        if child.checkpointing {
                            v.warnings.push(Problem::new(
                                &m.name,
                                "the child cadence has its own checkpoint store, which is ignored when it runs as a child",
                            ));
                        }
                        let inner = child.validate();
                        v.errors.extend(inner.errors.into_iter().map(|mut p| {
                            p.path = format!("{}/{}", m.name, p.path);
                            p
                        }));
                    }
                }
                _ => {}
            }
        }
        v
    }

    /// The structural fingerprint recomputed from this description (CKP-3).
    pub fn computed_fingerprint(&self) -> String {
        fingerprint_of_description(&self.measures)
    }

    /// A Mermaid flowchart, top-down (DIAG-1).
    pub fn to_mermaid(&self) -> String {
        self.to_mermaid_with(Direction::TopDown)
    }

    /// A Mermaid flowchart in `direction` (DIAG-4).
    pub fn to_mermaid_with(&self, direction: Direction) -> String {
        let g = self.graph();
        let mut out = format!("flowchart {}\n", direction.mermaid());
        write_mermaid_cluster(&g, None, 1, &mut out);
        for (from, to, label) in &g.edges {
            match label {
                Some(l) => {
                    let _ = writeln!(out, "    {from} -->|\"{}\"| {to}", mermaid_escape(l));
                }
                None => {
                    let _ = writeln!(out, "    {from} --> {to}");
                }
            }
        }
        out
    }

    /// A Graphviz DOT digraph, top-down (DIAG-1).
    pub fn to_dot(&self) -> String {
        self.to_dot_with(Direction::TopDown)
    }

    /// A Graphviz DOT digraph with `rankdir` from `direction` (DIAG-4).
    pub fn to_dot_with(&self, direction: Direction) -> String {
        let g = self.graph();
        let mut out = format!(
            "digraph \"{}\" {{\n    rankdir={};\n    node [shape=box, style=rounded];\n",
            dot_escape(&self.name),
            direction.dot()
        );
        write_dot_cluster(&g, None, 1, &mut out);
        for (from, to, label) in &g.edges {
            match label {
                Some(l) => {
                    let _ = writeln!(out, "    {from} -> {to} [label=\"{}\"];", dot_escape(l));
                }
                None => {
                    let _ = writeln!(out, "    {from} -> {to};");
                }
            }
        }
        out.push_str("}\n");
        out
    }
}

fn write_mermaid_cluster(g: &Graph, cluster: Option<usize>, depth: usize, out: &mut String) {
    let pad = "    ".repeat(depth);
    for (id, label, shape, c) in &g.nodes {
        if *c != cluster {
            continue;
        }
        let l = mermaid_escape(label);
        let _ = match shape {
            Shape::Terminal => writeln!(out, "{pad}{id}([\"{l}\"])"),
            Shape::Note => writeln!(out, "{pad}{id}[\"{l}\"]"),
            Shape::Decision => writeln!(out, "{pad}{id}{{\"{l}\"}}"),
            Shape::Junction => writeln!(out, "{pad}{id}((\"{l}\"))"),
        };
    }
    for (i, (id, label, parent)) in g.clusters.iter().enumerate() {
        if *parent != cluster {
            continue;
        }
        let _ = writeln!(
            out,
            "{pad}subgraph {id}_group[\"{}\"]",
            mermaid_escape(label)
        );
        write_mermaid_cluster(g, Some(i), depth + 1, out);
        let _ = writeln!(out, "{pad}end");
    }
}

fn write_dot_cluster(g: &Graph, cluster: Option<usize>, depth: usize, out: &mut String) {
    let pad = "    ".repeat(depth);
    for (id, label, shape, c) in &g.nodes {
        if *c != cluster {
            continue;
        }
        let shape = match shape {
            Shape::Terminal => "oval",
            Shape::Note => "box",
            Shape::Decision => "diamond",
            Shape::Junction => "circle",
        };
        let _ = writeln!(
            out,
            "{pad}{id} [label=\"{}\", shape={shape}];",
            dot_escape(label)
        );
    }
    for (i, (id, label, parent)) in g.clusters.iter().enumerate() {
        if *parent != cluster {
            continue;
        }
        let _ = writeln!(out, "{pad}subgraph cluster_{id} {{");
        let _ = writeln!(out, "{pad}    label=\"{}\";", dot_escape(label));
        write_dot_cluster(g, Some(i), depth + 1, out);
        let _ = writeln!(out, "{pad}}}");
    }
}
