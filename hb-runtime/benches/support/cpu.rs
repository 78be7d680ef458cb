//! CPU time of this process, for the benches that measure what a load costs.

/// Process CPU time (user + system) in nanoseconds, from `/proc/self/stat`.
pub fn process_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    ticks * 10_000_000 // 100 Hz clock ticks
}
