// NOTE-1: at most the score and the context.
use cadence_core::{BoxError, NoteContext, note};

struct Order;

#[note]
async fn charge(_order: &mut Order, _cx: &NoteContext<'_>, _extra: u32) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
