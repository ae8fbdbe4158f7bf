//! How a process names itself when it holds something in a store shared with other
//! processes (an export lease, a bulk load), and whether such a holder has exited.

/// This host's name, as the kernel gives it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

/// This boot of the host (Linux's `boot_id`), if known: a pid recorded before a reboot
/// may name another process after it.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
}

/// A new holder name for this process: `pid 4711 on host-a #<n> boot <boot id>`, where `n`
/// tells the holders within one process apart.
pub fn this_process() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let instance = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("pid {} on {} #{instance}", std::process::id(), host_name());
    match boot_id() {
        Some(boot) => format!("{name} boot {boot}"),
        None => name,
    }
}

/// Whether `holder` (as [`this_process`] names it) is a process of this host that has
/// exited: what a killed process held must not stay blocked until an expiry. Any doubt
/// (another host, a pid that exists, a name of another form) counts as alive.
pub fn has_exited(holder: &str) -> bool {
    let Some(rest) = holder.strip_prefix("pid ") else {
        return false;
    };
    let Some((pid, rest)) = rest.split_once(" on ") else {
        return false;
    };
    let Some((host, instance)) = rest.rsplit_once(" #") else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if host != host_name() {
        return false;
    }
    let recorded_boot = instance.split_once(" boot ").map(|(_, boot)| boot);
    if recorded_boot.is_some_and(|boot| Some(boot) != boot_id().as_deref()) {
        // Held before a reboot of this host: whatever has that pid now is another process.
        return true;
    }
    pid != std::process::id()
        && std::path::Path::new("/proc/self").exists()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_exited_process_of_this_host_has_exited() {
        if !std::path::Path::new("/proc/self").exists() {
            return;
        }
        assert!(!has_exited(&this_process()), "this process is alive");
        let host = host_name();
        // pid 1 always exists; a pid above the kernel's maximum never does.
        assert!(!has_exited(&format!("pid 1 on {host} #1")));
        assert!(has_exited(&format!("pid 4194305 on {host} #1")));
        assert!(!has_exited("pid 4194305 on some-other-host #1"));
        assert!(!has_exited("a holder named otherwise"));
        if let Some(boot) = boot_id() {
            // This boot: pid 1 is alive; another boot: whatever pid 1 was, it is gone.
            assert!(!has_exited(&format!("pid 1 on {host} #1 boot {boot}")));
            assert!(has_exited(&format!("pid 1 on {host} #1 boot not-{boot}")));
            assert!(!has_exited(&format!(
                "pid 1 on other-{host} #1 boot not-{boot}"
            )));
        }
    }
}
