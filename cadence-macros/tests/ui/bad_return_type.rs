// NOTE-1: a note returns `Result<(), E>` or `Result<Control, E>`.
use cadence_core::note;

struct Order;

#[note]
async fn charge(_order: &mut Order) -> u32 {
    7
}

fn main() {}
