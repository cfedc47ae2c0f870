//! How busy the machine is around a measurement: its load average.

/// The 1-minute load average from `/proc/loadavg` (NaN where it cannot be read).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}
