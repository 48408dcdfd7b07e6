// PAR-1: a Score must be Clone.
use cadence_core::Score;

#[derive(Score)]
struct S {
    n: u32,
}

fn main() {}
