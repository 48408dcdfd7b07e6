// PAR-1: every field not skipped must be PartialEq.
use cadence_core::Score;

#[derive(Clone)]
struct Opaque;

#[derive(Clone, Score)]
struct S {
    data: Opaque,
}

fn main() {}
