//! The order checkout flow: fetch the items, compute the total, branch on premium customers,
//! and pay through a child cadence with its own score type. Prints the final order and the
//! cadence as a Mermaid diagram.
//!
//! Run it with `cargo run -p example-checkout`.

use std::time::Duration;

use cadence_core::{BoxError, Cadence, CadenceError, OnError, cond, note};

/// The checkout's score: everything one order run knows.
#[derive(Debug, Default, Clone)]
struct Order {
    customer: String,
    items: Vec<(String, u32)>,
    subtotal_cents: u32,
    discount_cents: u32,
    total_cents: u32,
    premium: bool,
    shipping: String,
    receipt: Option<String>,
    notes: Vec<String>,
}

/// The payment child cadence's own score.
#[derive(Debug, Default)]
struct Payment {
    customer: String,
    amount_cents: u32,
    authorized: bool,
    receipt: Option<String>,
}

fn payment_cadence() -> Result<Cadence<Payment>, CadenceError> {
    Cadence::new("payment")
        .then(
            "authorize",
            note::from_fn(|p: &mut Payment| {
                Box::pin(async move {
                    // A real service call would go here; simulate its latency.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if p.amount_cents == 0 || p.customer.is_empty() {
                        return Err::<(), BoxError>("nothing to charge, or no customer".into());
                    }
                    p.authorized = true;
                    Ok(())
                })
            }),
        )
        .then(
            "capture",
            note::from_fn_with_context(|p: &mut Payment, cx| {
                Box::pin(async move {
                    // The idempotency key lets the payment provider deduplicate retries.
                    p.receipt = Some(format!(
                        "rcpt-{}-{}",
                        &cx.idempotency_key()[..8],
                        p.amount_cents
                    ));
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .build()
}

fn checkout_cadence() -> Result<Cadence<Order>, CadenceError> {
    Cadence::new("checkout")
        .then(
            "fetch_items",
            note::from_fn(|o: &mut Order| {
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    o.items = vec![
                        ("keyboard".into(), 7_900),
                        ("mouse".into(), 2_900),
                        ("cable".into(), 900),
                    ];
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .then(
            "compute_total",
            note::from_fn(|o: &mut Order| {
                Box::pin(async move {
                    o.subtotal_cents = o.items.iter().map(|(_, c)| c).sum();
                    o.premium = o.subtotal_cents >= 10_000;
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .split(
            "premium",
            cond::named("is_premium", |o: &Order| o.premium),
            [
                note::named(
                    "discount",
                    note::from_fn(|o: &mut Order| {
                        Box::pin(async move {
                            o.discount_cents = o.subtotal_cents / 10;
                            Ok::<_, BoxError>(())
                        })
                    }),
                ),
                note::named(
                    "express_shipping",
                    note::from_fn(|o: &mut Order| {
                        Box::pin(async move {
                            o.shipping = "express".into();
                            Ok::<_, BoxError>(())
                        })
                    }),
                ),
            ],
            [note::named(
                "standard_shipping",
                note::from_fn(|o: &mut Order| {
                    Box::pin(async move {
                        o.shipping = "standard".into();
                        Ok::<_, BoxError>(())
                    })
                }),
            )],
        )
        .then(
            "finalize",
            note::from_fn(|o: &mut Order| {
                Box::pin(async move {
                    o.total_cents = o.subtotal_cents - o.discount_cents;
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .child(
            "pay",
            payment_cadence()?,
            |o: &Order| Payment {
                customer: o.customer.clone(),
                amount_cents: o.total_cents,
                ..Payment::default()
            },
            |o: &mut Order, p: Payment| o.receipt = p.receipt,
        )
        .on_error(
            |o: &mut Order, e: &CadenceError| o.notes.push(format!("failed: {e}")),
            OnError::Stop,
        )
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let checkout = checkout_cadence()?;
    let order = Order {
        customer: "ada@example.com".into(),
        ..Order::default()
    };
    let order = checkout.run(order).await?;
    println!("final order:");
    println!("  customer : {}", order.customer);
    for (name, cents) in &order.items {
        println!("  item     : {name:<10} {:>8.2}", *cents as f64 / 100.0);
    }
    println!("  subtotal : {:>19.2}", order.subtotal_cents as f64 / 100.0);
    println!("  discount : {:>19.2}", order.discount_cents as f64 / 100.0);
    println!("  total    : {:>19.2}", order.total_cents as f64 / 100.0);
    println!("  premium  : {}", order.premium);
    println!("  shipping : {}", order.shipping);
    println!(
        "  receipt  : {}",
        order.receipt.as_deref().unwrap_or("(none)")
    );
    println!();
    println!("{}", checkout.to_mermaid());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn premium_order_is_discounted_and_paid() {
        let order = Order {
            customer: "ada@example.com".into(),
            ..Order::default()
        };
        let order = checkout_cadence().unwrap().run(order).await.unwrap();
        assert_eq!(order.subtotal_cents, 11_700);
        assert_eq!(order.total_cents, 10_530);
        assert_eq!(order.shipping, "express");
        assert!(order.receipt.unwrap().ends_with("-10530"));
    }
}
