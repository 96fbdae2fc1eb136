//! Build and profiling automation for the Tasker workspace (`cargo xtask --help`).
fn main() -> anyhow::Result<()> {
    anyhow::bail!("no xtask commands yet")
}
