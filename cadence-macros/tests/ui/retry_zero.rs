// NOTE-8, DSL-4: `retry` counts attempts, so 0 is invalid.
use cadence_core::{BoxError, note};

struct Order;

#[note(retry = 0)]
async fn charge(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
