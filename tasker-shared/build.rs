//! Rebuild when a migration is added or changes: `sqlx::migrate!` embeds the directory at
//! compile time, and on stable Rust cargo cannot see that dependency by itself (the function
//! files are embedded with `include_str!`, which cargo does see).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
