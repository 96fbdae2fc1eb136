//! Rebuild when a migration changes: `sqlx::migrate!` embeds the directory at compile time,
//! and on stable Rust cargo cannot see that dependency by itself.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
