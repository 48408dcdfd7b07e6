// NOTE-1: #[note] goes on a function.
use cadence_core::note;

#[note]
struct Charge;

fn main() {}
