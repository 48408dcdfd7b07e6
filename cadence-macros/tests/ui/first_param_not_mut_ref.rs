// NOTE-1: the score is taken as `&mut S`.
use cadence_core::{BoxError, note};

struct Order;

#[note]
async fn charge(_order: &Order) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
