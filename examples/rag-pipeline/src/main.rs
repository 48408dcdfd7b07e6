//! A retrieval-augmented answer pipeline over a derived [`Score`]: normalise the question,
//! retrieve passages from two simulated sources in parallel (merged with
//! [`MergeStrategy::SmartMerge`]), route on the question's intent (code, qa, or a fallback
//! path), then compose the answer from a template. Everything is in memory and deterministic:
//! no network, no model.
//!
//! Run it with `cargo run -p example-rag-pipeline`.

use std::collections::BTreeMap;
use std::time::Duration;

use cadence_core::event::{EventEmitter, EventKind};
use cadence_core::{
    BoxError, Cadence, CadenceBuilder, MergeStrategy, RunOptions, Score, TimingHooks, cond, note,
};
use serde::{Deserialize, Serialize};

/// One retrieved passage and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Passage {
    /// `docs` or `faq`.
    source: String,
    /// The passage's id within its source.
    id: String,
    /// The text the answer quotes.
    text: String,
    /// A code sample, if the passage has one.
    code: Option<String>,
    /// How many question terms the passage matched.
    score: usize,
}

impl Passage {
    fn citation(&self) -> String {
        format!("[{}:{}]", self.source, self.id)
    }
}

/// The pipeline's score: everything one question's run knows.
///
/// `passages` is a sequence and `hits` a map, so the two retrieval members of the parallel
/// group may both write them: `SmartMerge` concatenates their appends in declaration order and
/// merges the map by key. Serde makes the score checkpointable (`with_checkpoint`).
#[derive(Debug, Clone, Default, PartialEq, Score, Serialize, Deserialize)]
struct Rag {
    /// The question as asked.
    question: String,
    /// Lower-cased, punctuation stripped, whitespace collapsed.
    normalized: String,
    /// The content words of the question, singularised.
    terms: Vec<String>,
    /// Retrieved passages, from every source.
    passages: Vec<Passage>,
    /// Passages retrieved per source.
    hits: BTreeMap<String, usize>,
    /// The route branch that ran: `code`, `qa` or `fallback`.
    route: String,
    /// Indexes into `passages` that the answer uses, in the order it uses them.
    context: Vec<usize>,
    /// The composed answer.
    answer: String,
}

impl Rag {
    fn new(question: &str) -> Self {
        Rag {
            question: question.to_owned(),
            ..Rag::default()
        }
    }
}

/// An in-memory document: id, text, optional code sample.
type Doc = (&'static str, &'static str, Option<&'static str>);

/// The product documentation.
const DOCS: &[Doc] = &[
    (
        "concepts",
        "A cadence is a named chain of notes (async steps) over one score, the state of a run; \
         the score is given at run time, so one cadence serves any number of runs.",
        None,
    ),
    (
        "parallel",
        "A sync group runs its notes in parallel, each on its own clone of the score, then \
         merges the changed fields in declaration order.",
        None,
    ),
    (
        "writing-notes",
        "Write a note as an async fn over the score and mark it with the #[note] macro; the \
         function becomes a note value of the same name.",
        Some(
            "#[note]\nasync fn fetch(order: &mut Order) -> Result<(), BoxError> {\n    order.items = vec![20, 30];\n    Ok(())\n}",
        ),
    ),
    (
        "retry",
        "A retry policy runs a failing note again after an exponential backoff with jitter.",
        Some("note.with_retry(Retry::new(3).with_jitter(Jitter::Full))"),
    ),
    (
        "circuit-breaker",
        "A circuit breaker stops calling a dependency that keeps failing, then probes it again \
         once its recovery timeout has passed.",
        None,
    ),
];

/// The frequently asked questions, each answer keyed by its question.
const FAQ: &[Doc] = &[
    (
        "what-is-a-score",
        "What is a score? The state one run works on; every run brings its own score.",
        None,
    ),
    (
        "shared-cadence",
        "Is a cadence shared between requests? Yes: a built cadence is immutable and cheap to \
         clone, and each run gets its own score.",
        None,
    ),
    (
        "merge",
        "What happens when parallel notes write the same field? With SmartMerge vectors \
         concatenate and maps merge by key; two different values conflict.",
        None,
    ),
    (
        "closure-note",
        "How do I write a note without the macro? Use note::from_fn with a closure returning \
         a boxed future.",
        Some(
            "note::from_fn(|s: &mut State| Box::pin(async move {\n    s.count += 1;\n    Ok::<_, BoxError>(())\n}))",
        ),
    ),
];

/// Words that say nothing about the topic.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "can", "do", "does", "for", "how", "i", "in", "is", "it", "me", "my",
    "of", "on", "or", "show", "tell", "the", "to", "what", "when", "who", "why", "with", "you",
];

/// Lower case, letters and digits only, crude singular (`notes` → `note`).
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let w = w.to_lowercase();
            match w.strip_suffix('s') {
                Some(stem) if stem.len() > 3 && !stem.ends_with('s') => stem.to_owned(),
                _ => w,
            }
        })
}

/// Ranks `corpus` against `terms`: passages matching at least one term, best first (ties in
/// corpus order), at most `k`. A passage with a code sample also matches the words `code`,
/// `example` and `snippet`.
fn search(source: &str, corpus: &[Doc], terms: &[String], k: usize) -> Vec<Passage> {
    let mut scored: Vec<Passage> = corpus
        .iter()
        .map(|&(id, text, code)| {
            let mut doc_words: Vec<String> = words(text).collect();
            if code.is_some() {
                doc_words.extend(["code", "example", "snippet"].map(String::from));
            }
            doc_words.sort();
            doc_words.dedup();
            let score = terms
                .iter()
                .filter(|t| doc_words.binary_search(t).is_ok())
                .count();
            Passage {
                source: source.to_owned(),
                id: id.to_owned(),
                text: text.to_owned(),
                code: code.map(str::to_owned),
                score,
            }
        })
        .filter(|p| p.score > 0)
        .collect();
    // A stable sort keeps corpus order among equal scores.
    scored.sort_by_key(|p| std::cmp::Reverse(p.score));
    scored.truncate(k);
    scored
}

/// Normalises the question and extracts its content words.
#[note]
async fn normalize(r: &mut Rag) -> Result<(), BoxError> {
    let question = r.question.trim();
    if question.is_empty() {
        return Err("the question is empty".into());
    }
    r.normalized = question
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut terms: Vec<String> = Vec::new();
    for w in words(&r.normalized) {
        if !STOPWORDS.contains(&w.as_str()) && !terms.contains(&w) {
            terms.push(w);
        }
    }
    r.terms = terms;
    Ok(())
}

/// Searches the documentation (the slower source).
#[note]
async fn search_docs(r: &mut Rag) -> Result<(), BoxError> {
    tokio::time::sleep(Duration::from_millis(40)).await;
    let found = search("docs", DOCS, &r.terms, 2);
    r.hits.insert("docs".into(), found.len());
    r.passages.extend(found);
    Ok(())
}

/// Searches the FAQ (the faster source: it finishes first, yet merges second).
#[note]
async fn search_faq(r: &mut Rag) -> Result<(), BoxError> {
    tokio::time::sleep(Duration::from_millis(15)).await;
    let found = search("faq", FAQ, &r.terms, 2);
    r.hits.insert("faq".into(), found.len());
    r.passages.extend(found);
    Ok(())
}

/// Words that mark a request for code.
const CODE_WORDS: &[&str] = &["code", "example", "snippet", "syntax", "rust", "macro"];

/// Words that open a question.
const QUESTION_WORDS: &[&str] = &[
    "what", "why", "how", "when", "who", "which", "is", "does", "can",
];

/// The intent of the question: `code`, `qa`, or `other` (no route: the default branch).
fn classify(r: &Rag) -> &'static str {
    if r.terms.iter().any(|t| CODE_WORDS.contains(&t.as_str())) {
        "code"
    } else if r.question.trim_end().ends_with('?')
        || r.normalized
            .split(' ')
            .next()
            .is_some_and(|w| QUESTION_WORDS.contains(&w))
    {
        "qa"
    } else {
        "other"
    }
}

/// Code route: the two best passages with a code sample (ties in retrieval order), or the
/// best passage at all when none has one.
#[note]
async fn pick_snippets(r: &mut Rag) -> Result<(), BoxError> {
    r.route = "code".into();
    let mut order: Vec<usize> = (0..r.passages.len()).collect();
    order.sort_by_key(|&i| {
        let p = &r.passages[i];
        std::cmp::Reverse((p.code.is_some(), p.score))
    });
    let with_code = order
        .iter()
        .take_while(|&&i| r.passages[i].code.is_some())
        .count();
    order.truncate(with_code.clamp(1, 2));
    r.context = order;
    Ok(())
}

/// QA route: the two best passages, best first (ties in retrieval order).
#[note]
async fn rank_passages(r: &mut Rag) -> Result<(), BoxError> {
    r.route = "qa".into();
    let mut order: Vec<usize> = (0..r.passages.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(r.passages[i].score));
    order.truncate(2);
    r.context = order;
    Ok(())
}

/// Fallback route: not a question nor a code request; show up to three passages as they came.
#[note]
async fn broaden(r: &mut Rag) -> Result<(), BoxError> {
    r.route = "fallback".into();
    r.context = (0..r.passages.len().min(3)).collect();
    Ok(())
}

/// Composes the answer from the chosen passages with the route's template.
#[note]
async fn generate(r: &mut Rag) -> Result<(), BoxError> {
    let chosen: Vec<&Passage> = r.context.iter().map(|&i| &r.passages[i]).collect();
    if chosen.is_empty() {
        r.answer = format!(
            "I don't know: nothing in the docs or the FAQ matches \"{}\".",
            r.question.trim()
        );
        return Ok(());
    }
    let sources = chosen
        .iter()
        .map(|p| p.citation())
        .collect::<Vec<_>>()
        .join(" ");
    r.answer = match r.route.as_str() {
        "code" => {
            let mut out = String::new();
            for p in &chosen {
                out.push_str(&p.text);
                out.push('\n');
                if let Some(code) = &p.code {
                    out.push_str(&format!("```rust\n{code}\n```\n"));
                }
            }
            format!("{out}Sources: {sources}")
        }
        "qa" => {
            let text = chosen
                .iter()
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            format!("{text}\nSources: {sources}")
        }
        _ => {
            let mut out = String::from("Not sure what you are asking; the closest passages say:\n");
            for p in &chosen {
                out.push_str(&format!("- {} {}\n", p.text, p.citation()));
            }
            out.trim_end().to_owned()
        }
    };
    Ok(())
}

/// The pipeline's definition, without hooks (`main` adds them; tests build it bare).
fn rag_pipeline() -> CadenceBuilder<Rag> {
    Cadence::new("rag")
        .then("normalize", normalize)
        .sync_with(
            "retrieve",
            [search_docs, search_faq],
            MergeStrategy::SmartMerge,
        )
        .route_or(
            "intent",
            cond::selector("classify", classify),
            [("code", [pick_snippets]), ("qa", [rank_passages])],
            [broaden],
        )
        .then("generate", generate)
}

const QUESTIONS: &[&str] = &[
    "What is a cadence?",
    "Show me a code example of the note macro",
    "What happens when parallel notes write the same field?",
    "circuit breaker recovery",
    "Who won the 1998 world cup?",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Route decisions, as events; durations per note, as timings.
    let events = EventEmitter::new();
    events.on("branch.taken", |e: &cadence_core::Event| {
        if let EventKind::BranchTaken { path, branch, key } = &e.kind {
            println!(
                "  [{}] {path}: selector said {key:?}, took branch {branch:?}",
                e.run_id
            );
        }
    });
    let timing = TimingHooks::new();
    let rag = rag_pipeline()
        .with_hooks(events)
        .with_hooks(timing.clone())
        .build()?;

    for (i, question) in QUESTIONS.iter().enumerate() {
        let run_id = format!("q{}", i + 1);
        println!("== {run_id}: {question}");
        let r = rag
            .run_with(
                Rag::new(question),
                RunOptions::default().with_run_id(&run_id),
            )
            .await?;
        println!("  terms    : {}", r.terms.join(", "));
        println!("  hits     : {:?}", r.hits);
        println!("  route    : {}", r.route);
        println!("  passages :");
        for (j, p) in r.passages.iter().enumerate() {
            let used = if r.context.contains(&j) { "*" } else { " " };
            println!("   {used} {j}. {:<26} score {}", p.citation(), p.score);
        }
        println!("  answer   :");
        for line in r.answer.lines() {
            println!("    {line}");
        }
        if let Some(report) = timing.report(&run_id) {
            print!("  {}", report.replace('\n', "\n  ").trim_end());
            println!();
        }
        println!();
    }
    println!("{}", rag.to_mermaid());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cadence_core::checkpoint::MemoryStore;

    use super::*;

    async fn ask(question: &str) -> Rag {
        rag_pipeline()
            .build()
            .unwrap()
            .run(Rag::new(question))
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn qa_question_is_answered_from_both_sources() {
        let r = ask("What is a cadence?").await;
        assert_eq!(r.route, "qa");
        assert_eq!(
            r.answer,
            "A cadence is a named chain of notes (async steps) over one score, the state of a \
             run; the score is given at run time, so one cadence serves any number of runs. \
             Is a cadence shared between requests? Yes: a built cadence is immutable and cheap \
             to clone, and each run gets its own score.\n\
             Sources: [docs:concepts] [faq:shared-cadence]"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn code_request_takes_the_code_route() {
        let r = ask("Show me a code example of the note macro").await;
        assert_eq!(r.route, "code");
        assert_eq!(
            r.answer,
            "Write a note as an async fn over the score and mark it with the #[note] macro; the \
             function becomes a note value of the same name.\n\
             ```rust\n\
             #[note]\n\
             async fn fetch(order: &mut Order) -> Result<(), BoxError> {\n    \
             order.items = vec![20, 30];\n    Ok(())\n}\n\
             ```\n\
             How do I write a note without the macro? Use note::from_fn with a closure returning \
             a boxed future.\n\
             ```rust\n\
             note::from_fn(|s: &mut State| Box::pin(async move {\n    \
             s.count += 1;\n    Ok::<_, BoxError>(())\n}))\n\
             ```\n\
             Sources: [docs:writing-notes] [faq:closure-note]"
        );
        // The snippets came from both sources: one from the docs, one from the FAQ.
        assert_eq!(r.context, [0, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn both_sources_merge_in_declaration_order() {
        // The FAQ search sleeps 15 ms and the docs search 40 ms, so the FAQ member finishes
        // first; SmartMerge still appends in declaration order: docs, then FAQ.
        let started = tokio::time::Instant::now();
        let r = ask("What happens when parallel notes write the same field?").await;
        // The members ran concurrently: the group took as long as the slower one.
        assert_eq!(started.elapsed(), Duration::from_millis(40));
        let order: Vec<(&str, &str)> = r
            .passages
            .iter()
            .map(|p| (p.source.as_str(), p.id.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("docs", "parallel"),
                ("docs", "writing-notes"),
                ("faq", "merge"),
                ("faq", "closure-note"),
            ]
        );
        assert_eq!(
            r.hits,
            BTreeMap::from([("docs".to_owned(), 2), ("faq".to_owned(), 2)])
        );
        assert_eq!(r.route, "qa");
        assert_eq!(r.context, [2, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn routes_taken() {
        assert_eq!(
            ask("Show me a code example of the note macro").await.route,
            "code"
        );
        assert_eq!(ask("how are runs isolated").await.route, "qa");
        let other = ask("circuit breaker recovery").await;
        assert_eq!(other.route, "fallback");
        assert!(other.answer.starts_with("Not sure what you are asking"));
        assert!(other.answer.contains("[docs:circuit-breaker]"));
        let unknown = ask("Who won the 1998 world cup?").await;
        assert_eq!(unknown.route, "qa");
        assert!(unknown.passages.is_empty());
        assert_eq!(
            unknown.answer,
            "I don't know: nothing in the docs or the FAQ matches \"Who won the 1998 world cup?\"."
        );
    }

    #[tokio::test(start_paused = true)]
    async fn empty_question_fails_in_normalize() {
        let err = rag_pipeline()
            .build()
            .unwrap()
            .run(Rag::new("   "))
            .await
            .unwrap_err();
        assert_eq!(err.path(), Some("normalize"));
    }

    #[tokio::test(start_paused = true)]
    async fn checkpointed_run_gives_the_same_answer() {
        // The score is serde-serializable, so the pipeline can checkpoint every measure.
        let plain = ask("What is a cadence?").await;
        let rag = rag_pipeline()
            .with_checkpoint(Arc::new(MemoryStore::new()))
            .build()
            .unwrap();
        let r = rag
            .run_with(
                Rag::new("What is a cadence?"),
                RunOptions::default().with_run_id("q1"),
            )
            .await
            .unwrap();
        assert_eq!(r, plain);
    }
}
