//! Marks the frames of shared libraries (`libc.so.6`, `libm.so.6`, …) in `perf script`'s
//! output as it streams into inferno's folder, the way inferno marks kernel frames (`_[k]`),
//! so that the analysis can charge their time to the program's function that called them:
//! `__send` or `epoll_wait` name no code anyone here can change, their caller does. Inferno
//! keeps the module of a frame only for unknown symbols, hence this pass over the text.

use std::io::BufRead;

use super::map_lines::MapLines;

/// The suffix a shared library's frame gets.
pub const LIBRARY_SUFFIX: &str = "_[lib]";

/// Whether the file at `path` (or named `path`) is a shared library: `libc.so.6`, `x.so`.
pub fn is_shared_library(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.contains(".so.") || file.ends_with(".so")
}

/// A `perf script` frame line (`\t<addr> <symbol>+<offset> (<module>)`) with the symbol
/// marked when the module is a shared library.
pub fn mark(line: &str) -> Option<String> {
    let trimmed = line.trim_end();
    let open = trimmed.rfind(" (")?;
    let module = trimmed[open + 2..].strip_suffix(')')?;
    if !is_shared_library(module) {
        return None;
    }
    let head = &trimmed[..open];
    let (indent_addr, symbol) = head.trim_start().split_once(' ')?;
    if symbol.starts_with('[') {
        return None; // `[unknown]`: inferno names it after the module already
    }
    let (name, offset) = match symbol.rfind("+0x") {
        Some(i) => symbol.split_at(i),
        None => (symbol, ""),
    };
    let indent = &head[..head.len() - head.trim_start().len()];
    Some(format!(
        "{indent}{indent_addr} {name}{LIBRARY_SUFFIX}{offset} ({module}){}",
        &line[trimmed.len()..]
    ))
}

/// `perf script`'s output with every shared library frame marked, line by line.
pub fn marked<R: BufRead>(inner: R) -> MapLines<R, impl FnMut(String) -> String> {
    MapLines::new(inner, |line: String| mark(&line).unwrap_or(line))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn a_shared_library_frame_is_marked_and_others_are_not() {
        assert_eq!(
            mark("\t    7f0c2a1b4e6d __send+0x4d (/usr/lib/x86_64-linux-gnu/libc.so.6)\n")
                .as_deref(),
            Some("\t    7f0c2a1b4e6d __send_[lib]+0x4d (/usr/lib/x86_64-linux-gnu/libc.so.6)\n")
        );
        assert_eq!(
            mark("\t    55d0a1 tasker_worker::executor::submit+0x10 (/work/target/profiling/e2e)"),
            None
        );
        assert_eq!(
            mark("\t ffffffff8a0 _raw_spin_unlock_irqrestore+0x1d ([kernel.kallsyms])"),
            None
        );
        assert_eq!(
            mark("\t 7f0c2a1b4e6d [unknown] (/usr/lib/x86_64-linux-gnu/libc.so.6)"),
            None
        );
        assert_eq!(mark("e2e_latency 1234/1240 1.0: 1 cpu-clock:"), None);
    }

    #[test]
    fn the_stream_reads_as_the_marked_lines() {
        let text = "e2e 1/1 1.0: 1 cpu-clock:\n\t1 __send+0x1 (/lib/libc.so.6)\n\t2 main+0x2 (/bin/e2e)\n\n";
        let mut out = String::new();
        marked(text.as_bytes())
            .read_to_string(&mut out)
            .expect("reads");
        assert_eq!(
            out,
            "e2e 1/1 1.0: 1 cpu-clock:\n\t1 __send_[lib]+0x1 (/lib/libc.so.6)\n\t2 main+0x2 (/bin/e2e)\n\n"
        );
    }
}
