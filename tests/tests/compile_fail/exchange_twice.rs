use chart_auth::{ChartClient, CodeReceived, Connection};

async fn twice(code: Connection<CodeReceived>, client: &ChartClient) {
    let _first = code.exchange(client).await;
    let _second = code.exchange(client).await;
}

fn main() {}
