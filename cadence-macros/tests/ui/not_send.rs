// The `Send` check happens at the note's definition: an `Rc` held across an await is
// reported here, not where the note is used.
use std::rc::Rc;

use cadence_core::{BoxError, note};

struct Order {
    total: u32,
}

#[note]
async fn charge(order: &mut Order) -> Result<(), BoxError> {
    let shared = Rc::new(order.total);
    tokio::task::yield_now().await;
    order.total = *shared + 1;
    Ok(())
}

fn main() {}
