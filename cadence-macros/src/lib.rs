//! Procedural macros for `cadence-core`.
//!
//! Use them through `cadence_core`: its default `macros` feature re-exports them, so you write
//! `use cadence_core::note;` and never depend on this crate directly.
//!
//! - **`#[note]`** turns a function over the score into a `const` [`Note<S>`] value of the same
//!   name (NOTE-1). On an `async fn` it makes an async note whose future is checked for `Send`
//!   right at your definition; on a plain `fn` it makes a blocking note, run on tokio's blocking
//!   pool (NOTE-6). Its options set the note's name and policies at compile time (NOTE-2,
//!   NOTE-8). Because every `#[note]` is a `Note<S>`, different notes fit in one array:
//!   `.sequence("s", [fetch, total, ship])`.
//! - **`#[derive(Score)]`** gives a score struct field-level change detection and merging, which
//!   parallel groups (`.sync`) need to combine their members' writes (PAR-1, PAR-2).
//!
//! [`Note<S>`]: https://docs.rs/cadence-core/latest/cadence_core/struct.Note.html

use proc_macro::TokenStream;

mod note;

/// Turns a function over `&mut S` into a `const` [`Note<S>`] of the same name (NOTE-1).
///
/// ```
/// use cadence_core::{BoxError, Cadence, NoteContext, note};
///
/// #[derive(Debug, Default)]
/// struct Order {
///     items: Vec<u32>,
///     total: u32,
/// }
///
/// /// Loads the order's items.
/// #[note(retry = 3, timeout = "5s")]
/// async fn fetch(order: &mut Order) -> Result<(), BoxError> {
///     order.items = vec![20, 30];
///     Ok(())
/// }
///
/// #[note(name = "sum")]
/// async fn total(order: &mut Order, cx: &NoteContext<'_>) -> Result<(), BoxError> {
///     assert_eq!(cx.path(), "price/sum");
///     order.total = order.items.iter().sum();
///     Ok(())
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// // `fetch` and `total` are both `Note<Order>` values.
/// let checkout = Cadence::new("checkout").sequence("price", [fetch, total]).build()?;
/// assert_eq!(checkout.run(Order::default()).await?.total, 50);
/// # Ok::<_, cadence_core::CadenceError>(())
/// # }).unwrap();
/// ```
///
/// # Shape
///
/// The function takes the score, `(score: &mut S)`, and optionally the note's context,
/// `(score: &mut S, cx: &NoteContext<'_>)`, and returns `Result<(), E>` or
/// `Result<Control, E>` with `E: Into<BoxError>`. It must not be generic (a `const` cannot be;
/// use `note::from_fn` for generic notes), take `self`, or be `unsafe`, `extern` or `const`.
///
/// - `async fn`: an async note. Its future must be `Send`; if it is not, the error points at
///   your function.
/// - plain `fn`: a blocking note, run on tokio's blocking pool (NOTE-6); needs
///   `S: Default + Clone` (the score moves to the blocking thread; timeouts run on a clone).
///
/// The generated `const` keeps the function's visibility, doc comments, `cfg` and lint
/// attributes; any other attribute (such as `#[tracing::instrument]`) stays on the function.
///
/// # Options
///
/// `#[note(name = "charge", retry = 3, timeout = "5s", deadline = "2m", crate = "path")]`,
/// all optional, each at most once:
///
/// - `name`: the note's name (NOTE-2); by default the function's name.
/// - `retry`: the number of attempts, at least 1 (NOTE-8).
/// - `timeout`: the limit on each attempt, a non-zero duration such as `"250ms"`, `"5s"` or
///   `"2m"`.
/// - `deadline`: the limit on all attempts and waits together, a non-zero duration.
/// - `crate`: the path to `cadence_core`, when you reach it through a re-export (default
///   `::cadence_core`).
///
/// Anything else is a compile error that names the option.
///
/// [`Note<S>`]: https://docs.rs/cadence-core/latest/cadence_core/struct.Note.html
#[proc_macro_attribute]
pub fn note(attr: TokenStream, item: TokenStream) -> TokenStream {
    note::expand(attr.into(), item.into()).into()
}

mod score;

/// Derives [`Score`](https://docs.rs/cadence-core/latest/cadence_core/score/trait.Score.html):
/// field-level change detection and merging for parallel groups (PAR-1, PAR-2).
///
/// Fields are classed by their declared type: `Vec`/`VecDeque` are sequences,
/// `HashMap`/`BTreeMap` maps, `HashSet`/`BTreeSet` sets, anything else a value.
/// `#[score(merge = "value" | "sequence" | "map" | "set")]` overrides the class;
/// `#[score(skip)]` leaves a field out of change detection and merging; `Shared<T>` fields are
/// skipped automatically (PAR-3). `#[score(crate = "path")]` on the struct names a re-export
/// of `cadence_core`. The struct must be `Clone`, and every field not skipped `PartialEq`.
///
/// ```
/// use cadence_core::Score;
/// use std::collections::BTreeMap;
///
/// #[derive(Clone, Score)]
/// struct Research {
///     query: String,
///     hits: Vec<String>,
///     scores: BTreeMap<String, u32>,
///     #[score(skip)]
///     attempts: u32,
/// }
/// # use cadence_core::score::Score as _;
/// assert_eq!(Research::FIELDS.len(), 3);
/// ```
#[proc_macro_derive(Score, attributes(score))]
pub fn derive_score(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    score::derive(input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
