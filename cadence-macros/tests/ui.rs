//! Compile-fail tests for `#[note]`: every invalid use is an error naming the problem, spanned
//! on it (NOTE-1, NOTE-8).

#[test]
fn ui() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
