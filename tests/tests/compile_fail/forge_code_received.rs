use chart_auth::{AuthorizationCode, CodeReceived, Connection};

fn main() {
    // A `CodeReceived` can only come from a verified callback.
    let _forged: Connection<CodeReceived> = Connection { stage: CodeReceived { code: AuthorizationCode::new("x") } };
}
