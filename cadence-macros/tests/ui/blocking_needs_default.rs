// NOTE-6: a blocking note (plain `fn`) needs a `Default` score.
use cadence_core::{BoxError, note};

#[derive(Clone)]
struct Order;

#[note]
fn charge(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
