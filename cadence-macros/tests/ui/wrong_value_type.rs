// NOTE-1: a value of the wrong type names the option.
use cadence_core::{BoxError, note};

struct Order;

#[note(name = charge, retry = "3", timeout = 5)]
async fn charge(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
