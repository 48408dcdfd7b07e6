// `crate = "…"` replaces `::cadence_core` in every generated path.
use cadence_core::{BoxError, note};

struct Order;

#[note(crate = "crate::nowhere")]
async fn charge(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
