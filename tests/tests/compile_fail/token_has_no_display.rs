use chart_auth::AccessToken;

fn main() {
    let token = AccessToken::new("secret");
    println!("{token}");
}
