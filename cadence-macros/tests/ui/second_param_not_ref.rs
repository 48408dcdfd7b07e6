// NOTE-1, NOTE-3: the second parameter is the context, borrowed.
use cadence_core::{BoxError, NoteContext, note};

struct Order;

#[note]
async fn charge(_order: &mut Order, _cx: NoteContext<'_>) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
