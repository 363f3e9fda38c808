//! What a process costs, from /proc: resident memory, CPU time, and the CPU
//! time the hypervisor gave to other guests.

/// Resident memory now and at its peak (kB), from /proc.
pub fn memory_kb(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time (user + system, ms) a process has used so far, from
/// `/proc/<pid>/stat`; `None` for `pid` means this process.
pub fn cpu_ms(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or("/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces; fields are counted after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some(ticks * 10)
}

/// CPU time (ms, all cores together) the hypervisor has given to other
/// guests so far: the `steal` column of /proc/stat, 0 on bare metal. Time
/// stolen during a mode slows it for reasons that have nothing to do with
/// tracing, so the report shows it next to the figures it distorts.
pub fn stolen_ms() -> Option<u64> {
    steal_ticks(&std::fs::read_to_string("/proc/stat").ok()?).map(|t| t * 10)
}

fn steal_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    // cpu user nice system idle iowait irq softirq steal ...
    line.split_whitespace().nth(8)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_the_eighth_figure_of_the_all_cpus_line() {
        let stat = "cpu  218889 0 31019 144831 2067 0 8759 7088 0 0\ncpu0 1 2 3 4 5 6 7 99 0 0\n";
        assert_eq!(steal_ticks(stat), Some(7088));
        assert_eq!(steal_ticks("cpu0 1 2 3\n"), None);
    }
}
