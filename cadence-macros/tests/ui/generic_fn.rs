// A `const` cannot be generic: generic notes use note::from_fn.
use cadence_core::{BoxError, note};

#[note]
async fn clear<T: Default + Send>(score: &mut T) -> Result<(), BoxError> {
    *score = T::default();
    Ok(())
}

fn main() {}
