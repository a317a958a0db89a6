//! What this node has: host name, CPUs, memory, accelerators.
//!
//! The parsers are pure functions over text (tested on captured output); [`discover`] wires
//! them to `/proc` and `nvidia-smi`.

use std::process::Command;

use crate::protocol::{AcceleratorInfo, NodeInfo, PROTOCOL_VERSION};

/// What [`discover`] should do besides looking.
#[derive(Debug, Clone, Default)]
pub struct DiscoverOptions {
    /// `--accelerators N`: declare N accelerators instead of asking `nvidia-smi` (CPU-only hosts
    /// and tests).
    pub declared_accelerators: Option<u32>,
    /// `--cluster NAME`.
    pub cluster: Option<String>,
    /// The address other nodes reach this one at.
    pub address: Option<String>,
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        let mut parts = rest.split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => n.checked_mul(1024),
            Some(_) => None,
        }
    })
}

/// The output of
/// `nvidia-smi --query-gpu=index,name,memory.total,uuid --format=csv,noheader,nounits`.
pub fn parse_nvidia_smi(csv: &str) -> Result<Vec<AcceleratorInfo>, String> {
    let mut out = Vec::new();
    for (n, line) in csv.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 4 {
            return Err(format!(
                "line {}: expected 4 fields (index, name, memory, uuid), got {}: {line:?}",
                n + 1,
                fields.len()
            ));
        }
        let index = fields[0]
            .parse()
            .map_err(|_| format!("line {}: bad index {:?}", n + 1, fields[0]))?;
        let known = |s: &str| !s.is_empty() && !s.starts_with('[') && s != "N/A";
        out.push(AcceleratorInfo {
            index,
            name: fields[1].to_string(),
            memory_mib: fields[2].parse().ok(),
            uuid: known(fields[3]).then(|| fields[3].to_string()),
        });
    }
    Ok(out)
}

/// `n` declared accelerators, indexed 0..n.
pub fn declared(n: u32) -> Vec<AcceleratorInfo> {
    (0..n)
        .map(|index| AcceleratorInfo {
            index,
            name: "declared".into(),
            memory_mib: None,
            uuid: None,
        })
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The kernel's id of this boot: unique per machine and boot, even among clones of one image
/// (which share `/etc/machine-id` and often their host name).
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Accelerators `nvidia-smi` reports; none where it is missing or fails.
pub fn nvidia_accelerators() -> Vec<AcceleratorInfo> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,name,memory.total,uuid",
            "--format=csv,noheader,nounits",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            match parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("could not read nvidia-smi output: {e}");
                    Vec::new()
                }
            }
        }
        Ok(o) => {
            tracing::info!("nvidia-smi failed ({}): no GPUs reported", o.status);
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}

/// Looks at this machine.
pub fn discover(opts: &DiscoverOptions) -> NodeInfo {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo(&t))
        .unwrap_or(0);
    let accelerators = match opts.declared_accelerators {
        Some(n) => declared(n),
        None => nvidia_accelerators(),
    };
    NodeInfo {
        hostname: hostname(),
        cluster: opts.cluster.clone(),
        cpus,
        memory_bytes,
        accelerators,
        address: opts.address.clone(),
        orphan_stop_ms: None,
        protocol_version: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_in_bytes() {
        let text = "MemTotal:       131900000 kB\nMemFree:        1000 kB\n";
        assert_eq!(parse_meminfo(text), Some(131_900_000 * 1024));
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn nvidia_smi_csv() {
        let csv = "0, NVIDIA H100 80GB HBM3, 81559, GPU-1a2b\n\
                   1, NVIDIA H100 80GB HBM3, 81559, GPU-3c4d\n\n";
        let gpus = parse_nvidia_smi(csv).expect("parses");
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[1].index, 1);
        assert_eq!(gpus[1].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(gpus[1].memory_mib, Some(81559));
        assert_eq!(gpus[1].uuid.as_deref(), Some("GPU-3c4d"));
        let odd = parse_nvidia_smi("0, Some GPU, [N/A], [N/A]\n").expect("parses");
        assert_eq!(odd[0].memory_mib, None);
        assert_eq!(odd[0].uuid, None);
        assert!(parse_nvidia_smi("0, two fields\n").is_err());
        assert!(parse_nvidia_smi("x, a, 1, u\n").is_err());
    }

    #[test]
    fn declared_accelerators_win_over_discovery() {
        let node = discover(&DiscoverOptions {
            declared_accelerators: Some(3),
            cluster: Some("local".into()),
            address: None,
        });
        assert_eq!(node.accelerators.len(), 3);
        assert_eq!(node.accelerators[2].index, 2);
        assert!(node.cpus >= 1);
        assert!(!node.hostname.is_empty());
        assert!(
            node.memory_bytes > 0,
            "/proc/meminfo should be readable on Linux"
        );
    }
}
