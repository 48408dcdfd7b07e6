// PAR-1: only structs with named fields can derive Score.
use cadence_core::Score;

#[derive(Clone, Score)]
struct Pair(u32, u32);

fn main() {}
