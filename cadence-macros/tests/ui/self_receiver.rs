// NOTE-1: a note takes the score, not `self`.
use cadence_core::{BoxError, note};

struct Order;

#[note]
async fn charge(&mut self) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
