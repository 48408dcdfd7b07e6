// PAR-2: the merge class must be value, sequence, map or set.
use cadence_core::Score;

#[derive(Clone, Score)]
struct S {
    #[score(merge = "queue")]
    items: Vec<u32>,
}

fn main() {}
