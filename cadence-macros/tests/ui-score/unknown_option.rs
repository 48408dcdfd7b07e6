// PAR-2: unknown #[score] options are named.
use cadence_core::Score;

#[derive(Clone, Score)]
struct S {
    #[score(ignore)]
    items: Vec<u32>,
}

fn main() {}
