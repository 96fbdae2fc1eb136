//! Ruby's start takes over the signals that end a process (INT, TERM, …) unless the process
//! already handles them; in an embedded VM its handler only interrupts Ruby code, so a
//! benchmark or test interrupted with Ctrl-C would keep running. The signals the process left
//! at their default before Ruby started are handed back to the system's default after.
//! (A process that handles them itself, as `tasker worker` does, keeps its handlers: Ruby
//! leaves handlers it finds alone.)

/// The terminating signals Ruby installs handlers for, by Ruby's name and number.
const TAKEN_OVER: [(&str, u32); 7] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("USR1", 10),
    ("USR2", 12),
    ("ALRM", 14),
    ("TERM", 15),
];

/// Of [`TAKEN_OVER`], those neither caught nor ignored right now (Linux's
/// `/proc/self/status`; elsewhere none, leaving Ruby's handlers in place).
pub(crate) fn at_default() -> Vec<&'static str> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    let (Some(caught), Some(ignored)) = (mask("SigCgt:"), mask("SigIgn:")) else {
        return Vec::new();
    };
    TAKEN_OVER
        .iter()
        .filter(|(_, number)| (caught | ignored) & (1 << (number - 1)) == 0)
        .map(|(name, _)| *name)
        .collect()
}

/// Ruby code handing `signals` back to the system's default action.
pub(crate) fn restore_script(signals: &[&str]) -> String {
    signals
        .iter()
        .map(|s| format!("Signal.trap({s:?}, \"SYSTEM_DEFAULT\")\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_process_has_the_terminating_signals_at_their_default() {
        // cargo's test harness handles none of them
        assert!(at_default().contains(&"TERM"), "{:?}", at_default());
        assert_eq!(
            restore_script(&["INT"]),
            "Signal.trap(\"INT\", \"SYSTEM_DEFAULT\")\n"
        );
    }
}
