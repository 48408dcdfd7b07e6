// NOTE-1: an unknown option is a compile error naming it.
use cadence_core::{BoxError, note};

struct Order;

#[note(retries = 3)]
async fn charge(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
