use chart_auth::{Connection, Stage};

// The stages are sealed: no crate can add one, so no `Connection` can skip a step.
#[derive(Debug)]
struct Skipped;

impl Stage for Skipped {}

fn main() {
    let _c: Option<Connection<Skipped>> = None;
}
