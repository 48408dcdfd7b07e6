// NOTE-1: options are `key = value`; a missing or parenthesised value names the option.
use cadence_core::{BoxError, note};

struct Order;

#[note(retry, timeout("5s"))]
async fn charge(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
