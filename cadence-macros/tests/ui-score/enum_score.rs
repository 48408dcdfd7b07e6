// PAR-1: enums cannot derive Score.
use cadence_core::Score;

#[derive(Clone, Score)]
enum State {
    A,
    B,
}

fn main() {}
