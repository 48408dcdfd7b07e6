// A note is called as a safe Rust function: no `const`, `unsafe` or `extern`.
use cadence_core::{BoxError, note};

#[derive(Default)]
struct Order;

#[note]
const fn total(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

#[note]
unsafe fn charge(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

#[note]
extern "C" fn refund(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
