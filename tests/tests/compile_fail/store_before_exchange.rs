use chart_auth::vault::{MemoryStore, Vault};
use chart_auth::{CodeReceived, Connection};

async fn early(code: Connection<CodeReceived>, vault: &Vault<MemoryStore>) {
    let _stored = code.store(vault).await;
}

fn main() {}
