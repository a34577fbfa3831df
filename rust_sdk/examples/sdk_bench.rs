//! How long the SDK takes per request, without the gateway or any pipes.
//!
//! `cargo run --release --example sdk_bench` (add `-- ITERATIONS RUNS` to
//! change the defaults of 200000 and 7).
//!
//! Each request is the full worker path for a 1 KiB JSON body: read the
//! `request` frame from an in-memory buffer, decode it into a `Request`, call
//! a handler that parses the body into a struct and answers
//! `Response::ok(json!(...))`, and write the `response` frame to a `Vec`.
//! Frames are served in batches of 1000 through `rust_edge_gateway_sdk::serve`
//! (the loop `handler_loop!` runs), so the `ready` frame each batch starts
//! with costs 1/1000 of a request. Prints the median of the runs in µs per
//! request.

use rust_edge_gateway_sdk::frame::{encode_frame, read_frame, MAX_FRAME_LEN};
use rust_edge_gateway_sdk::prelude::*;
use std::hint::black_box;
use std::time::Instant;

const BATCH: usize = 1000;

#[derive(Serialize, Deserialize)]
struct Line {
    sku: String,
    qty: u32,
    price_cents: u64,
}

#[derive(Serialize, Deserialize)]
struct Order {
    customer: String,
    email: String,
    lines: Vec<Line>,
    note: String,
}

fn handle(req: Request) -> Response {
    let order: Order = match req.json() {
        Ok(order) => order,
        Err(e) => return e.into(),
    };
    let total: u64 = order
        .lines
        .iter()
        .map(|l| l.price_cents * l.qty as u64)
        .sum();
    Response::ok(json!({
        "customer": order.customer,
        "lines": order.lines.len(),
        "total_cents": total,
        "request_id": req.request_id,
    }))
}

/// A 1 KiB (1024-byte) JSON body.
fn body() -> String {
    let lines = (0..12)
        .map(|i| Line {
            sku: format!("SKU-{i:05}-BLUE"),
            qty: i + 1,
            price_cents: 1999 + i as u64,
        })
        .collect();
    let mut order = Order {
        customer: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        lines,
        note: String::new(),
    };
    let base = serde_json::to_string(&order).unwrap().len();
    order.note = "n".repeat(1024 - base);
    let text = serde_json::to_string(&order).unwrap();
    assert_eq!(text.len(), 1024);
    text
}

fn main() {
    let mut args = std::env::args().skip(1);
    let iterations: usize = args
        .next()
        .map_or(200_000, |a| a.parse().expect("ITERATIONS"));
    let runs: usize = args.next().map_or(7, |a| a.parse().expect("RUNS"));
    let batches = iterations.div_ceil(BATCH).max(1);

    let body = body();
    let mut input = Vec::new();
    for id in 0..BATCH {
        let frame = json!({
            "type": "request", "id": id, "method": "POST", "path": "/orders",
            "query": {"dry_run": "false"},
            "headers": {
                "content-type": "application/json", "host": "api.example.com",
                "user-agent": "bench/1.0", "accept": "*/*", "content-length": "1024",
            },
            "params": {}, "body": body, "client_ip": "10.1.2.3",
            "request_id": format!("3f2a9c0e8b7d4e51a6c{id:013}"),
        });
        input.extend(encode_frame(&frame, MAX_FRAME_LEN).unwrap());
    }
    let mut output = Vec::with_capacity(input.len());

    // Check the answers once.
    rust_edge_gateway_sdk::serve(&mut &input[..], &mut output, handle).unwrap();
    let mut frames = &output[..];
    read_frame(&mut frames, MAX_FRAME_LEN).unwrap(); // ready
    let first = read_frame(&mut frames, MAX_FRAME_LEN).unwrap().unwrap();
    assert_eq!(first["status"], 200, "{first:?}");
    let answer: JsonValue = serde_json::from_str(first["body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["lines"], 12);

    let mut per_request = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        for _ in 0..batches {
            output.clear();
            rust_edge_gateway_sdk::serve(&mut &input[..], &mut output, handle).unwrap();
            black_box(&output);
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / (batches * BATCH) as f64;
        per_request.push(us);
    }
    per_request.sort_by(f64::total_cmp);
    let median = per_request[per_request.len() / 2];
    println!(
        "sdk_bench: {} requests x {runs} runs, {}-byte JSON body: median {median:.2} µs/request \
         (min {:.2}, max {:.2})",
        batches * BATCH,
        body.len(),
        per_request[0],
        per_request[per_request.len() - 1],
    );
}
