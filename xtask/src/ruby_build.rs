//! Whether this machine can build the workspace's embedded Ruby (`tasker-ruby`, through
//! magnus and rb-sys): a `ruby` with its C headers, and libclang for rb-sys's bindgen. Checked
//! before building, so a machine without them gets one sentence naming the packages instead
//! of a build script's panic.

use std::path::Path;
use std::process::Command;

/// The package that embeds Ruby; only a workspace that has it needs the check.
pub const RUBY_PACKAGE: &str = "tasker-ruby";

/// Why Ruby cannot be built here, with the packages that fix it; `None` when it can.
pub fn missing() -> Option<String> {
    missing_with(&std::env::var_os("RUBY").unwrap_or_else(|| "ruby".into()))
}

/// [`missing`] with the `ruby` rb-sys would run (`$RUBY`, else `ruby` on PATH).
fn missing_with(ruby: &std::ffi::OsStr) -> Option<String> {
    let packages = if cfg!(target_os = "macos") {
        "`brew install ruby llvm`"
    } else {
        "`apt-get install ruby-dev libclang-dev` on Debian/Ubuntu"
    };
    let headers = Command::new(ruby)
        .args(["-e", "print RbConfig::CONFIG['rubyhdrdir']"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let reason = match headers {
        None => "no `ruby` runs here",
        Some(dir) if !Path::new(&dir).join("ruby.h").exists() => "Ruby's C headers are missing",
        Some(_) if cfg!(target_os = "linux") && !libclang_present() => "libclang is missing",
        Some(_) => return None,
    };
    Some(format!(
        "{RUBY_PACKAGE} embeds Ruby and {reason}: install them with {packages}"
    ))
}

fn libclang_present() -> bool {
    if std::env::var_os("LIBCLANG_PATH").is_some() {
        return true;
    }
    [
        "/usr/lib/llvm-*/lib/libclang*.so*",
        "/usr/lib/*/libclang*.so*",
        "/usr/lib64/libclang*.so*",
    ]
    .iter()
    .filter_map(|pattern| glob::glob(pattern).ok())
    .any(|mut paths| paths.next().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ruby_is_one_sentence_naming_the_packages() {
        let message = missing_with("/nonexistent/ruby".as_ref()).expect("no ruby there");
        assert!(message.contains("no `ruby` runs here"), "{message}");
        assert!(
            message.contains("ruby-dev") || message.contains("brew"),
            "{message}"
        );
    }
}
