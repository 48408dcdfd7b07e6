// NOTE-8: durations are parsed at compile time; zero is invalid too.
use cadence_core::{BoxError, note};

struct Order;

#[note(timeout = "5 parsecs")]
async fn charge(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

#[note(deadline = "0s")]
async fn refund(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
