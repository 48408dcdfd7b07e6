//! Diagrams and descriptions: DIAG-1…5 (and the GEN-4 fingerprint).

mod common;

use std::collections::BTreeSet;

use cadence_core::hash::fnv1a_128_hex;
use cadence_core::{
    BoxError, Cadence, CadenceError, Description, Direction, MeasureKind, OnError, cond, note,
};
use common::*;

/// A cadence with every measure kind available: then, sequence, split (empty false branch),
/// route with a default, child (with its own sequence and a grandchild).
fn checkout() -> Cadence<Log> {
    let grandchild = Cadence::<Log>::new("card")
        .then("auth", push("auth"))
        .build()
        .unwrap();
    let child = Cadence::<Log>::new("payment")
        .then("charge", push("c"))
        .sequence("verify", [push("a"), push("b")])
        .child("card", grandchild, |_: &Log| vec![], |l, c| l.extend(c))
        .build()
        .unwrap();
    Cadence::<Log>::new("checkout")
        .then("fetch", push("f"))
        .sequence(
            "prepare",
            [
                note::named("price", push("p")),
                note::named("tax", push("t")),
            ],
        )
        .split(
            "shipping",
            cond::named("is_premium", |_: &Log| true),
            [note::named("express", push("e"))],
            none(),
        )
        .route_or(
            "notify",
            cond::selector("channel", |_: &Log| "email"),
            [("email", [push("e")]), ("sms", [push("s")])],
            [note::named("log", push("l"))],
        )
        .child("pay", child, |_: &Log| vec![], |l, c| l.extend(c))
        .build()
        .unwrap()
}

/// Removes quoted label text (handling `\"` escapes), keeping the structure and the ids.
fn strip_labels(s: &str) -> String {
    let mut out = String::new();
    let mut in_quote = false;
    let mut escaped = false;
    for c in s.chars() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
                out.push('"');
            }
        } else {
            if c == '"' {
                in_quote = true;
            }
            out.push(c);
        }
    }
    out
}

fn assert_one_trailing_newline(s: &str) {
    assert!(s.ends_with('\n'), "no trailing newline");
    assert!(!s.ends_with("\n\n"), "more than one trailing newline");
}

// ---------------------------------------------------------------- DIAG-1

#[test]
fn mermaid_renders_every_measure() {
    // DIAG-1: sequences as a labelled group of chained notes; splits as a decision with the
    // condition label and yes/no edges; routes with one edge per key plus `default`; child
    // cadences as nested subgraphs, recursively.
    let m = checkout().to_mermaid();
    assert!(m.starts_with("flowchart TD\n"), "{m}");
    for needle in [
        r#"start(["start"])"#,
        r#"m0["fetch"]"#,
        // sequence: labelled group, chained notes
        r#"subgraph m1_group["prepare"]"#,
        r#"m1_0["price"]"#,
        r#"m1_1["tax"]"#,
        "m1_0 --> m1_1",
        // split: decision with the condition label, yes/no edges (empty false branch too)
        r#"m2{"shipping<br/>is_premium"}"#,
        r#"m2 -->|"yes"| m2_0_0"#,
        r#"m2 -->|"no"|"#,
        // route: one edge per key plus default
        r#"m3{"notify<br/>channel"}"#,
        r#"m3 -->|"email"| m3_0_0"#,
        r#"m3 -->|"sms"| m3_1_0"#,
        r#"m3 -->|"default"| m3_2_0"#,
        r#"m3_2_0["log"]"#,
        // child: nested subgraph, recursively
        r#"subgraph m4_group["pay"]"#,
        r#"m4__m0["charge"]"#,
        r#"subgraph m4__m1_group["verify"]"#,
        "m4__m1_0 --> m4__m1_1",
        r#"m4__m2__m0["auth"]"#,
    ] {
        assert!(m.contains(needle), "missing {needle:?} in\n{m}");
    }
    // Measures are chained in order: each measure's exit leads to the next one's entry.
    assert!(m.contains("start --> m0"), "{m}");
    assert!(m.contains("m0 --> m1_0"), "{m}");
    assert!(m.contains("m1_1 --> m2"), "{m}");
    assert!(m.contains("--> m3\n"), "{m}");
    assert!(m.contains("--> m4__start"), "{m}");
    // Three nested subgraphs in the child (pay, verify, card) plus prepare; all closed.
    let opens = m
        .lines()
        .filter(|l| l.trim_start().starts_with("subgraph "))
        .count();
    let closes = m.lines().filter(|l| l.trim() == "end").count();
    assert_eq!(opens, 4, "{m}");
    assert_eq!(closes, opens, "{m}");
}

#[test]
fn every_edge_endpoint_is_a_declared_node() {
    // DIAG-1: the graph is well formed (a renderer would otherwise invent nodes).
    let m = checkout().to_mermaid();
    let mut declared = BTreeSet::new();
    let mut used = BTreeSet::new();
    for line in m.lines().skip(1) {
        let t = line.trim();
        if t.starts_with("subgraph ") || t == "end" {
            continue;
        }
        if t.contains("-->") {
            let mut parts = t.split_whitespace();
            let from = parts.next().unwrap();
            let to = parts.last().unwrap();
            used.insert(from.to_owned());
            used.insert(to.to_owned());
        } else {
            let id: String = t
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            declared.insert(id);
        }
    }
    assert!(
        used.is_subset(&declared),
        "undeclared: {:?}",
        used.difference(&declared)
    );
}

#[test]
fn dot_renders_every_measure() {
    // DIAG-1 for DOT.
    let d = checkout().to_dot();
    assert!(d.starts_with("digraph \"checkout\" {\n"), "{d}");
    assert!(d.ends_with("}\n"), "{d}");
    for needle in [
        "rankdir=TB;",
        "m0 [label=\"fetch\"",
        "subgraph cluster_m1 {",
        "label=\"prepare\";",
        "m1_0 -> m1_1;",
        "m2 [label=\"shipping\\nis_premium\", shape=diamond];",
        "m2 -> m2_0_0 [label=\"yes\"];",
        "[label=\"no\"];",
        "m3 -> m3_0_0 [label=\"email\"];",
        "m3 -> m3_1_0 [label=\"sms\"];",
        "m3 -> m3_2_0 [label=\"default\"];",
        "subgraph cluster_m4 {",
        "subgraph cluster_m4__m1 {",
        "m4__m2__m0 [label=\"auth\"",
    ] {
        assert!(d.contains(needle), "missing {needle:?} in\n{d}");
    }
}

#[test]
fn cadence_and_description_render_identically() {
    // DIAG-1: to_mermaid/to_dot on a cadence or a Description give identical output.
    let c = checkout();
    let d = c.describe();
    assert_eq!(c.to_mermaid(), d.to_mermaid());
    assert_eq!(c.to_dot(), d.to_dot());
    // Also after a JSON round trip of the description (what the CLI reads).
    let back: Description = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
    assert_eq!(c.to_mermaid(), back.to_mermaid());
    assert_eq!(c.to_dot(), back.to_dot());
}

// ---------------------------------------------------------------- DIAG-2

#[test]
fn ids_are_positional_never_derived_from_names() {
    // DIAG-2: the same structure under other names gives the same ids and edges.
    let a = checkout();
    let b = Cadence::<Log>::new("other name")
        .then("x y", push("f"))
        .sequence(
            "z",
            [note::named("1", push("p")), note::named("é", push("t"))],
        )
        .split(
            "m0",
            cond::named("start", |_: &Log| true),
            [note::named("finish", push("e"))],
            none(),
        )
        .route_or(
            "end",
            cond::selector("m1_0", |_: &Log| "email"),
            [("k1", [push("e")]), ("k2", [push("s")])],
            [push("l")],
        )
        .child(
            "sub graph",
            Cadence::<Log>::new("p2")
                .then("q", push("c"))
                .sequence("r", [push("a"), push("b")])
                .child(
                    "s",
                    Cadence::<Log>::new("t")
                        .then("u", push("u"))
                        .build()
                        .unwrap(),
                    |_: &Log| vec![],
                    |l, c| l.extend(c),
                )
                .build()
                .unwrap(),
            |_: &Log| vec![],
            |l, c| l.extend(c),
        )
        .build()
        .unwrap();
    assert_ne!(a.to_mermaid(), b.to_mermaid());
    assert_eq!(strip_labels(&a.to_mermaid()), strip_labels(&b.to_mermaid()));
    let (da, db) = (a.to_dot(), b.to_dot());
    // Skip the digraph header line (it carries the cadence name).
    let body = |s: &str| strip_labels(s.split_once('\n').unwrap().1);
    assert_eq!(body(&da), body(&db));
}

#[test]
fn id_scheme() {
    // DIAG-2: `start`, `m<i>`, `m<i>_<j>`, child content prefixed `m<i>__`.
    let m = checkout().to_mermaid();
    let ids: BTreeSet<String> = m
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|t| !t.starts_with("subgraph ") && *t != "end" && !t.contains("-->"))
        .map(|t| {
            t.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    for id in [
        "start",
        "m0",
        "m1_0",
        "m1_1",
        "m2",
        "m3",
        "m4__start",
        "m4__m0",
    ] {
        assert!(ids.contains(id), "{id} not in {ids:?}");
    }
    for id in &ids {
        let ok = id == "start"
            || id == "end"
            || id == "finish"
            || id.starts_with('m') && id[1..].starts_with(|c: char| c.is_ascii_digit());
        assert!(ok, "non-positional id {id:?}");
    }
}

// ---------------------------------------------------------------- DIAG-3

#[test]
fn mermaid_escaping() {
    // DIAG-3: labels always quoted; every character other than ASCII letters, digits, space
    // and `_-.,:;/()[]{}'!?+*=@` is written `#<decimal code>;`, a line break `<br/>`.
    let name = "say \"hi\" <b> & #1 | é ☕ 😀 ~ `x` $%^\\";
    let c = Cadence::<Log>::new("esc")
        .then(name, push("a"))
        .split(
            "s",
            cond::named("a/b_-.,:;()[]{}'!?+*=@ XYZ09\ntwo\tlines", |_: &Log| true),
            [push("t")],
            none(),
        )
        .route("r", |_: &Log| "k", [("e-mail \"☕\"", [push("k")])])
        .sequence("grp <1>", [push("g")])
        .build()
        .unwrap();
    let m = c.to_mermaid();
    let expected = "say #34;hi#34; #60;b#62; #38; #35;1 #124; #233; #9749; #128512; #126; #96;x#96; #36;#37;#94;#92;";
    assert!(m.contains(&format!("m0[\"{expected}\"]")), "{m}");
    assert!(
        m.contains("m1{\"s<br/>a/b_-.,:;()[]{}'!?+*=@ XYZ09<br/>two#9;lines\"}"),
        "{m}"
    );
    assert!(m.contains("-->|\"e-mail #34;#9749;#34;\"|"), "{m}");
    assert!(m.contains("subgraph m3_group[\"grp #60;1#62;\"]"), "{m}");
    // Nothing unescaped leaks into any label.
    assert!(labels(&m).len() > 5);
    for label in labels(&m) {
        let rest = label.replace("<br/>", "");
        for bad in ['<', '>', '&', '|', '\\', '`', '"', '\t', '\n', 'é', '☕'] {
            assert!(!rest.contains(bad), "{bad:?} leaked in label {label:?}");
        }
    }
}

/// The texts between double quotes (Mermaid labels never contain a raw quote).
fn labels(s: &str) -> Vec<String> {
    s.split('"').skip(1).step_by(2).map(str::to_owned).collect()
}

#[test]
fn dot_escaping() {
    // DIAG-3: DOT labels quoted with `\` → `\\`, `"` → `\"`, newline → `\n`.
    let c = Cadence::<Log>::new("dot \"name\"")
        .then("back\\slash \"q\" é", push("a"))
        .split(
            "s",
            cond::named("two\nlines", |_: &Log| true),
            [push("t")],
            none(),
        )
        .build()
        .unwrap();
    let d = c.to_dot();
    assert!(d.starts_with("digraph \"dot \\\"name\\\"\" {\n"), "{d}");
    assert!(d.contains("m0 [label=\"back\\\\slash \\\"q\\\" é\""), "{d}");
    assert!(d.contains("m1 [label=\"s\\ntwo\\nlines\""), "{d}");
    assert!(!d.contains("two\nlines"), "{d}");

    // Edge labels are escaped too.
    let c = Cadence::<Log>::new("edges")
        .route("r", |_: &Log| "k", [("say \"k\"\\", [push("k")])])
        .build()
        .unwrap();
    let d = c.to_dot();
    assert!(d.contains("[label=\"say \\\"k\\\"\\\\\"];"), "{d}");
}

#[test]
fn any_name_renders_from_a_description() {
    // DIAG-3: any name renders — also names a builder would reject (line breaks), as found
    // in a hand-written description.
    let json = r#"{
        "version": 1, "name": "line\nbreak", "fingerprint": "00000000000000000000000000000000",
        "checkpointing": false,
        "measures": [
            {"kind": "note", "name": "a\"b\nc", "notes": [{"name": "a\"b\nc"}]},
            {"kind": "sequence", "name": "s\r", "notes": [{"name": "x\ny"}]}
        ]
    }"#;
    let d: Description = serde_json::from_str(json).unwrap();
    let m = d.to_mermaid();
    assert!(m.contains(r#"m0["a#34;b<br/>c"]"#), "{m}");
    assert!(m.contains(r#"m1_0["x<br/>y"]"#), "{m}");
    assert!(m.contains(r#"subgraph m1_group["s#13;"]"#), "{m}");
    let dot = d.to_dot();
    assert!(dot.starts_with("digraph \"line\\nbreak\" {\n"), "{dot}");
    assert!(dot.contains("m0 [label=\"a\\\"b\\nc\""), "{dot}");
    assert_one_trailing_newline(&m);
    assert_one_trailing_newline(&dot);
}

#[test]
fn mermaid_labels_are_always_quoted() {
    // DIAG-3: `id["…"]` (and the other shapes) always quote; edge labels too.
    let m = checkout().to_mermaid();
    for line in m.lines().skip(1) {
        let t = line.trim();
        if t == "end" {
            continue;
        }
        if let Some((_, rest)) = t.split_once("-->") {
            if rest.starts_with('|') {
                assert!(rest.starts_with("|\""), "unquoted edge label: {t}");
            }
            continue;
        }
        let after_id: String = t
            .chars()
            .skip_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ' ')
            .collect();
        let t2 = t.strip_prefix("subgraph ").unwrap_or(t);
        let after_id = if t2 != t {
            t2.chars()
                .skip_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        } else {
            after_id
        };
        let open: String = after_id
            .chars()
            .take_while(|c| "([{".contains(*c))
            .collect();
        assert!(!open.is_empty(), "no shape: {t}");
        assert!(
            after_id[open.len()..].starts_with('"'),
            "unquoted label: {t}"
        );
    }
}

// ---------------------------------------------------------------- DIAG-4

#[test]
fn output_is_deterministic_with_one_trailing_newline() {
    // DIAG-4: byte-identical for equal input, ending with one newline.
    let (a, b) = (checkout(), checkout());
    assert_eq!(a.to_mermaid(), a.to_mermaid());
    assert_eq!(a.to_mermaid(), b.to_mermaid());
    assert_eq!(a.to_dot(), b.to_dot());
    for dir in [
        Direction::TopDown,
        Direction::LeftRight,
        Direction::BottomTop,
        Direction::RightLeft,
    ] {
        assert_one_trailing_newline(&a.describe().to_mermaid_with(dir));
        assert_one_trailing_newline(&a.describe().to_dot_with(dir));
    }
    assert_one_trailing_newline(&a.to_mermaid());
    assert_one_trailing_newline(&a.to_dot());
}

#[test]
fn direction_and_rankdir() {
    // DIAG-4: Mermaid takes a direction, DOT a rankdir.
    let d = checkout().describe();
    assert!(
        d.to_mermaid_with(Direction::LeftRight)
            .starts_with("flowchart LR\n")
    );
    assert!(
        d.to_mermaid_with(Direction::BottomTop)
            .starts_with("flowchart BT\n")
    );
    assert!(
        d.to_mermaid_with(Direction::RightLeft)
            .starts_with("flowchart RL\n")
    );
    assert_eq!(d.to_mermaid_with(Direction::TopDown), d.to_mermaid());
    assert_eq!(Direction::default(), Direction::TopDown);
    assert!(
        d.to_dot_with(Direction::LeftRight)
            .contains("\n    rankdir=LR;\n")
    );
    assert!(d.to_dot().contains("\n    rankdir=TB;\n"));
    // Only the direction changes.
    assert_eq!(
        d.to_mermaid_with(Direction::LeftRight)
            .replacen("flowchart LR", "flowchart TD", 1),
        d.to_mermaid()
    );
    assert_eq!("LR".parse::<Direction>(), Ok(Direction::LeftRight));
    assert!("sideways".parse::<Direction>().is_err());
}

// ---------------------------------------------------------------- DIAG-5

#[test]
fn description_fields() {
    // DIAG-5: version 1, name, fingerprint, checkpointing, on_error, measures with kind,
    // name, notes, condition label, route keys, default, child description.
    let c = checkout();
    let d = c.describe();
    assert_eq!(d.version, 1);
    assert_eq!(d.name, "checkout");
    assert_eq!(d.fingerprint, c.fingerprint());
    assert!(!d.checkpointing);
    assert_eq!(d.on_error, None);
    let kinds: Vec<(MeasureKind, &str)> = d
        .measures
        .iter()
        .map(|m| (m.kind, m.name.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (MeasureKind::Note, "fetch"),
            (MeasureKind::Sequence, "prepare"),
            (MeasureKind::Split, "shipping"),
            (MeasureKind::Route, "notify"),
            (MeasureKind::Child, "pay"),
        ]
    );
    let names = |ns: &[cadence_core::describe::NoteDescription]| -> Vec<String> {
        ns.iter().map(|n| n.name.clone()).collect()
    };
    assert_eq!(names(&d.measures[0].notes), ["fetch"]);
    assert_eq!(names(&d.measures[1].notes), ["price", "tax"]);
    let split = &d.measures[2];
    assert_eq!(split.condition.as_deref(), Some("is_premium"));
    let keys: Vec<&str> = split.routes.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["true", "false"]);
    assert_eq!(names(&split.routes[0].notes), ["express"]);
    assert!(split.routes[1].notes.is_empty());
    let route = &d.measures[3];
    assert_eq!(route.condition.as_deref(), Some("channel"));
    let keys: Vec<&str> = route.routes.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["email", "sms"]);
    assert_eq!(names(route.default.as_ref().unwrap()), ["log"]);
    let child = d.measures[4].child.as_ref().unwrap();
    assert_eq!(child.name, "payment");
    assert_eq!(child.measures.len(), 3);
    assert_eq!(child.measures[2].child.as_ref().unwrap().name, "card");

    let with_handler = Cadence::<Log>::new("h")
        .then("a", push("a"))
        .then("b", note::blocking(|_: &mut Log| Ok::<_, BoxError>(())))
        .on_error(|_: &mut Log, _: &CadenceError| (), OnError::Continue)
        .build()
        .unwrap()
        .describe();
    assert_eq!(with_handler.on_error, Some(OnError::Continue));
    assert!(!with_handler.measures[0].notes[0].blocking);
    assert!(with_handler.measures[1].notes[0].blocking);
}

#[test]
fn description_round_trips_through_json_unchanged() {
    // DIAG-5: round-trips through JSON unchanged.
    for d in [
        checkout().describe(),
        Cadence::<Log>::new("h")
            .then("b", note::blocking(|_: &mut Log| Ok::<_, BoxError>(())))
            .route("r", |_: &Log| "k", [("k", [push("k")])])
            .on_error(|_: &mut Log, _: &CadenceError| (), OnError::Stop)
            .build()
            .unwrap()
            .describe(),
    ] {
        let json = serde_json::to_string(&d).unwrap();
        let back: Description = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        let pretty = serde_json::to_string_pretty(&d).unwrap();
        let back: Description = serde_json::from_str(&pretty).unwrap();
        assert_eq!(back, d);
        let value = serde_json::to_value(&d).unwrap();
        assert_eq!(value["version"], 1);
        let back: Description = serde_json::from_value(value).unwrap();
        assert_eq!(back, d);
    }
}

fn is_lower_hex_32(s: &str) -> bool {
    s.len() == 32 && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

#[test]
fn fingerprint_is_stable_hex_and_structural() {
    // DIAG-5, GEN-4: the fingerprint is 32 lowercase hex digits; equal for equal structure
    // (whatever the closures do); different when the structure changes.
    let c = checkout();
    assert!(is_lower_hex_32(c.fingerprint()), "{}", c.fingerprint());
    assert_eq!(c.fingerprint(), checkout().fingerprint());
    assert_eq!(c.describe().computed_fingerprint(), c.fingerprint());

    let base = || {
        Cadence::<Log>::new("fp")
            .then("a", push("a"))
            .sequence("s", [push("x"), push("y")])
            .route("r", |_: &Log| "k", [("k", [push("k")])])
    };
    let fp = base().build().unwrap().fingerprint().to_owned();
    // Different closure bodies, same structure.
    let other_code = Cadence::<Log>::new("fp")
        .then(
            "a",
            note::from_fn(|l: &mut Log| {
                Box::pin(async move {
                    l.clear();
                    Err::<(), BoxError>("entirely different".into())
                })
            }),
        )
        .sequence("s", [push("1"), panics("2", "x")])
        .route(
            "r",
            |l: &Log| if l.is_empty() { "k" } else { "other" },
            [("k", [fail("k", "no")])],
        )
        .build()
        .unwrap();
    assert_eq!(other_code.fingerprint(), fp);
    // Structure changes.
    let changed = [
        base().then("b", push("b")).build().unwrap(),
        Cadence::<Log>::new("fp")
            .then("A", push("a"))
            .sequence("s", [push("x"), push("y")])
            .route("r", |_: &Log| "k", [("k", [push("k")])])
            .build()
            .unwrap(),
        Cadence::<Log>::new("fp")
            .then("a", push("a"))
            .sequence("s", [push("x"), note::named("renamed", push("y"))])
            .route("r", |_: &Log| "k", [("k", [push("k")])])
            .build()
            .unwrap(),
        Cadence::<Log>::new("fp")
            .then("a", push("a"))
            .sequence("s", [push("x"), push("y")])
            .route("r", |_: &Log| "k", [("other", [push("k")])])
            .build()
            .unwrap(),
        Cadence::<Log>::new("fp")
            .then("a", push("a"))
            .sequence("s", [push("x"), push("y")])
            .route_or("r", |_: &Log| "k", [("k", [push("k")])], [push("d")])
            .build()
            .unwrap(),
        Cadence::<Log>::new("fp")
            .sequence("a", [push("a")])
            .sequence("s", [push("x"), push("y")])
            .route("r", |_: &Log| "k", [("k", [push("k")])])
            .build()
            .unwrap(),
    ];
    for (i, c) in changed.iter().enumerate() {
        assert!(is_lower_hex_32(c.fingerprint()));
        assert_ne!(c.fingerprint(), fp, "change #{i} kept the fingerprint");
    }
}

#[test]
fn fingerprint_is_the_fnv_hash_of_the_structure_lines() {
    // GEN-4 (with the CKP-3 line format): 128-bit FNV-1a over `<depth>:<kind>:<name>` lines.
    let c = Cadence::<Log>::new("fp")
        .then("a", push("a"))
        .sequence("s", [push("x"), note::named("y", push("y"))])
        .split("sp", |_: &Log| true, [push("t")], none())
        .route_or("r", |_: &Log| "k", [("k", [push("k")])], [push("d")])
        .build()
        .unwrap();
    let lines = [
        "0:note:a",
        "0:sequence:s",
        "1:note:0",
        "1:note:y",
        "0:split:sp",
        "1:key:true",
        "2:note:0",
        "1:key:false",
        "0:route:r",
        "1:key:k",
        "2:note:0",
        "1:key:*",
        "2:note:0",
    ]
    .join("\n");
    assert_eq!(c.fingerprint(), fnv1a_128_hex(lines.as_bytes()));
}
