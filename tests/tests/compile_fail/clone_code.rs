use chart_auth::AuthorizationCode;

fn main() {
    let code = AuthorizationCode::new("abc");
    let _copy = code.clone();
}
