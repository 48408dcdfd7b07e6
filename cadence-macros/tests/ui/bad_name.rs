// NOTE-2, GEN-1: a note name is non-empty and has no `/`.
use cadence_core::{BoxError, note};

struct Order;

#[note(name = "")]
async fn charge(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

#[note(name = "pay/charge")]
async fn refund(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
