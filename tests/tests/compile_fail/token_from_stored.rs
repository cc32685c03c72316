use chart_auth::{Connection, Stored};

fn leak(stored: &Connection<Stored>) {
    let _token = stored.access_token();
}

fn main() {}
