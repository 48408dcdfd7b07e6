// NOTE-1: each option at most once.
use cadence_core::{BoxError, note};

struct Order;

#[note(timeout = "1s", timeout = "2s")]
async fn charge(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
