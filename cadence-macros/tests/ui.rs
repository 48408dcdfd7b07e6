//! Compile-fail tests: every invalid use of `#[note]` (NOTE-1, NOTE-8) and of
//! `#[derive(Score)]` (PAR-1, PAR-2) is an error naming the problem, spanned on it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.compile_fail("tests/ui-score/*.rs");
}
