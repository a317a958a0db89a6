//! The hardware a job runs on, and what fraction of its peaks real kernels reach.
//!
//! Peaks come from the catalog in `switchyard_core::accelerator`; the fractions here are
//! properties of kernels and libraries (cuBLAS/CUTLASS GEMMs, FlashAttention, NCCL), each named
//! and justified. None is fitted to a calibration row.

use serde::Serialize;
use switchyard_core::accelerator::{Accelerator, Vendor};
use switchyard_core::fleet::{Cluster, LevelKind};

/// Fraction of the scale-up link rate (per direction) that NCCL ring collectives reach as bus
/// bandwidth. nccl-tests on DGX A100 report about 230-240 GB/s all-reduce bus bandwidth against
/// 300 GB/s per direction, DGX H100 about 360-370 GB/s against 450: about 0.8.
pub const SCALE_UP_COLLECTIVE_EFFICIENCY: f64 = 0.8;

/// Fraction of the scale-out line rate collectives reach on an InfiniBand fabric when the plan
/// names only an accelerator (a fleet cluster gives its own `network_efficiency`). nccl-tests
/// across DGX nodes with one 200/400 Gb/s HCA per GPU report ring bus bandwidth of about 80-85%
/// of line rate at large message sizes.
pub const DEFAULT_NETWORK_EFFICIENCY: f64 = 0.8;

/// Fixed cost of one all-to-all across nodes (NCCL send/recv setup to every peer), s.
pub const COLLECTIVE_LATENCY_ALL_TO_ALL_S: f64 = 50e-6;

/// Latency of one point-to-point transfer between nodes (a pipeline stage's send), seconds:
/// NCCL's per-operation launch plus an InfiniBand hop.
pub const COLLECTIVE_LATENCY_SCALE_OUT_S: f64 = 20e-6;

/// NCCL's ring cost model (`src/graph/tuning.cc`, the `baseLat`/`hwLat` tables and the
/// protocol bandwidth factors), per protocol LL, LL128, Simple: base latency, latency per ring
/// step over NVLink and over the network, seconds, and the share of the bus bandwidth the
/// protocol moves data at (LL sends 8-byte flag+data words, a quarter of the bandwidth for an
/// all-reduce; LL128 120 of every 128 bytes).
pub const NCCL_BASE_LATENCY_S: [f64; 3] = [3.6e-6, 10.0e-6, 8.4e-6];
pub const NCCL_NVLINK_STEP_LATENCY_S: [f64; 3] = [0.47e-6, 1.9e-6, 3.4e-6];
pub const NCCL_NET_STEP_LATENCY_S: [f64; 3] = [2.7e-6, 4.0e-6, 9.6e-6];
pub const NCCL_PROTOCOL_BANDWIDTH: [f64; 3] = [0.25, 0.92, 1.0];

/// The collectives [`Hardware::nccl_time`] costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collective {
    AllReduce,
    ReduceScatter,
    AllGather,
}

/// Fraction of HBM peak that streaming (element-wise, normalization, optimizer) kernels reach:
/// STREAM-like copies on A100/H100 sustain 80-90% of the datasheet bandwidth; fused PyTorch
/// element-wise kernels somewhat less.
pub const MEMORY_BANDWIDTH_EFFICIENCY: f64 = 0.8;

/// Memory a device cannot give to the job: the CUDA context and kernels (about 0.5-1 GiB) and
/// NCCL buffers (about 1 GiB at the default buffer size and a few communicators), GiB.
/// Caching-allocator fragmentation is [`USABLE_MEMORY_FRACTION`]'s share, not counted here too.
pub const RESERVED_MEMORY_GIB: f64 = 2.0;

/// Largest fraction of an HBM the caching allocator can fill before fragmentation makes
/// allocations fail (PyTorch users typically see OOMs beyond about 90-95% of capacity).
pub const USABLE_MEMORY_FRACTION: f64 = 0.95;

/// The hardware one job (or one inference replica) is planned on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hardware {
    #[serde(serialize_with = "accelerator_name")]
    pub accelerator: &'static Accelerator,
    /// Devices in the job.
    pub count: u32,
    /// Devices per server/host.
    pub per_node: u32,
    /// Devices on one scale-up fabric (NVLink domain).
    pub scale_up_domain: u32,
    /// Per-device scale-up bandwidth, per direction, GB/s.
    pub scale_up_gb_s: f64,
    /// Per-device scale-out bandwidth, per direction, GB/s.
    pub scale_out_gb_s: f64,
    /// Fraction of scale-out line rate collectives reach.
    pub network_efficiency: f64,
    /// Name of the fleet cluster, if the plan names one.
    pub cluster: Option<String>,
    /// Mean time between failures of one node, hours (from the cluster).
    pub node_mtbf_hours: Option<f64>,
    /// Price per accelerator-hour, USD (from the cluster's contract).
    pub price_per_accelerator_hour: Option<f64>,
    /// The storage's aggregate write bandwidth, GB/s (from the cluster, where stated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_write_gb_s: Option<f64>,
}

fn accelerator_name<S: serde::Serializer>(
    a: &&'static Accelerator,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.name)
}

impl Hardware {
    /// `count` devices of a catalog accelerator in its usual servers, on an InfiniBand-class
    /// network.
    pub fn from_accelerator(accelerator: &'static Accelerator, count: u32) -> Hardware {
        let per_node = accelerator.per_node.max(1);
        Hardware {
            accelerator,
            count,
            per_node,
            scale_up_domain: accelerator.scale_up.domain.max(1),
            scale_up_gb_s: accelerator.scale_up.gb_s,
            scale_out_gb_s: accelerator.scale_out_gb_s,
            network_efficiency: DEFAULT_NETWORK_EFFICIENCY,
            cluster: None,
            node_mtbf_hours: None,
            price_per_accelerator_hour: None,
            checkpoint_write_gb_s: None,
        }
    }

    /// `count` devices of a fleet cluster: its servers, scale-up domain and the bandwidth the
    /// fleet gives it, the bandwidth of the smallest topology level that holds the job, its
    /// network efficiency, failure rate and price.
    pub fn from_cluster(cluster: &Cluster, count: u32) -> Hardware {
        let per_node = cluster.accelerators_per_node.max(1);
        let nodes = count.div_ceil(per_node);
        // Traffic between scale-up domains rides the smallest level above the domain that
        // holds the job, even when the job fits in one server: a server can hold several
        // domains (PCIe cards bridged in pairs, 16 H100), and between them is no fabric.
        let level = cluster
            .topology
            .levels
            .iter()
            .find(|l| l.kind != LevelKind::ScaleUp && l.nodes >= nodes)
            .unwrap_or_else(|| cluster.topology.smallest_level_holding(nodes));
        let scale_up_gb_s = cluster
            .topology
            .level(LevelKind::ScaleUp)
            .map_or(cluster.accelerator.scale_up.gb_s, |l| l.gb_s);
        Hardware {
            accelerator: cluster.accelerator,
            count,
            per_node,
            scale_up_domain: cluster.scale_up_accelerators(),
            scale_up_gb_s,
            scale_out_gb_s: level.gb_s.min(scale_up_gb_s),
            network_efficiency: cluster.topology.network_efficiency,
            cluster: Some(cluster.name.clone()),
            node_mtbf_hours: Some(cluster.node_mtbf_hours),
            price_per_accelerator_hour: Some(cluster.price_per_accelerator_hour),
            checkpoint_write_gb_s: cluster.checkpoint_write_gb_s,
        }
    }

    /// Puts `per_node` devices in each server instead of the catalog's usual number. Where the
    /// accelerator's scale-up fabric lies inside the server (NVLink on an HGX board, bridged
    /// PCIe cards), a smaller server has a smaller fabric — a 4-GPU H100 board is a 4-GPU
    /// NVLink domain; a rack-scale fabric (NVL72, a TPU pod) spans servers and keeps its size
    /// ([`Accelerator::fabric_spans_servers`]).
    pub fn set_per_node(&mut self, per_node: u32) {
        let per_node = per_node.max(1);
        self.scale_up_domain = self.accelerator.scale_up_domain_in_servers_of(per_node);
        self.per_node = per_node;
    }

    /// Nodes the job occupies.
    pub fn nodes(&self) -> u32 {
        self.count.div_ceil(self.per_node)
    }

    /// Per-device bus bandwidth (bytes/s) of a collective among `group` devices that are `span`
    /// consecutive ranks wide: the scale-up fabric if the span fits in one domain, else the
    /// scale-out network.
    ///
    /// A group that spans domains but has `q` members in each scale-up domain runs NCCL's
    /// multi-ring / hierarchical algorithms over those members' `q` NICs at once (one ring per
    /// NIC, joined over NVLink inside the domain), so its per-device bus bandwidth is `q` times
    /// the per-device network rate, capped by the scale-up rate. In an 8-GPU server the domain
    /// is the server; in an NVL72 rack it is the rack. `stride` is the rank distance between
    /// consecutive members.
    pub fn group_bw(&self, size: u32, stride: u32) -> f64 {
        let span = size.saturating_mul(stride);
        let up = self.scale_up_gb_s * 1e9 * SCALE_UP_COLLECTIVE_EFFICIENCY;
        if span <= self.scale_up_domain {
            return up;
        }
        let q = self.members_per_domain(size, stride);
        (self.scale_out_gb_s * 1e9 * self.network_efficiency * f64::from(q)).min(up)
    }

    /// Members of a group (`size` ranks, `stride` apart) that share one scale-up domain: the
    /// NVL72 rack, not its 4-GPU trays; an NVLink-bridged pair, not the 8-GPU PCIe server that
    /// holds four of them (traffic between the pairs pays the level above the domain); the
    /// server, for cards with no fabric beyond PCIe.
    fn members_per_domain(&self, size: u32, stride: u32) -> u32 {
        // Cards with no scale-up fabric at all (PCIe only: L40S, A10, T4) talk inside their
        // server over PCIe, which `scale_up_gb_s` is for them: the server's NICs bound by it.
        let domain = if self.scale_up_domain > 1 {
            self.scale_up_domain
        } else {
            self.per_node
        };
        (domain / stride.max(1)).clamp(1, size.max(1))
    }

    /// Time of an all-to-all in which each of `size` members (rank distance `stride`) sends
    /// `bytes` spread evenly over the group: the part bound for other scale-up domains leaves
    /// through the device's own NIC, the part for members in the same domain over the scale-up
    /// fabric.
    pub fn all_to_all_time(&self, bytes: f64, size: u32, stride: u32) -> f64 {
        if size <= 1 {
            return 0.0;
        }
        let n = f64::from(size);
        let up = self.scale_up_gb_s * 1e9 * SCALE_UP_COLLECTIVE_EFFICIENCY;
        if size.saturating_mul(stride) <= self.scale_up_domain {
            return bytes * (n - 1.0) / n / up;
        }
        let q = f64::from(self.members_per_domain(size, stride));
        let remote = bytes * (n - q) / n / (self.scale_out_gb_s * 1e9 * self.network_efficiency);
        let local = bytes * (q - 1.0) / n / up;
        remote.max(local) + COLLECTIVE_LATENCY_ALL_TO_ALL_S
    }

    /// Time of an MoE token dispatch (or combine) in which each of `size` members (rank
    /// distance `stride`) sends its `token_bytes` of tokens to the members holding each token's
    /// `k` experts out of `experts` spread evenly over the group, the way DeepEP's normal
    /// kernels (and HybridEP) move them: a token goes to each member that holds any of its
    /// experts once (DeepEP's `is_token_in_rank` layout; the member expands it to its experts),
    /// and crosses the scale-out network once per scale-up domain it is bound for, to be
    /// fanned out to that domain's members over the scale-up fabric there.
    pub fn dispatch_deduplicated_time(
        &self,
        token_bytes: f64,
        k: u32,
        experts: u32,
        size: u32,
        stride: u32,
    ) -> f64 {
        if size <= 1 {
            return 0.0;
        }
        let n = f64::from(size);
        let up = self.scale_up_gb_s * 1e9 * SCALE_UP_COLLECTIVE_EFFICIENCY;
        // Members a token reaches: k when each member holds at most one expert.
        let members = groups_holding(k, experts, n);
        if size.saturating_mul(stride) <= self.scale_up_domain {
            return token_bytes * members * (n - 1.0) / n / up;
        }
        let q = f64::from(self.members_per_domain(size, stride));
        let domains = (n / q).max(1.0);
        let remote_domains = groups_holding(k, experts, domains) * (domains - 1.0) / domains;
        let remote =
            token_bytes * remote_domains / (self.scale_out_gb_s * 1e9 * self.network_efficiency);
        // Over NVLink each member forwards what arrives for the domain's other members, from
        // its own tokens and from other domains alike.
        let local = token_bytes * members * (q - 1.0) / q / up;
        remote.max(local) + COLLECTIVE_LATENCY_ALL_TO_ALL_S
    }

    /// Time of one NCCL ring collective of a `bytes` buffer over `size` consecutive ranks, by
    /// NCCL's own cost model (`src/graph/tuning.cc`): each protocol (LL, LL128, Simple) costs
    /// a base latency, a per-step latency for each of the ring's steps (NVLink steps inside the
    /// scale-up domain, network steps between domains) and the bytes at the protocol's share of
    /// the bus bandwidth; NCCL picks the fastest. Small messages ride LL (about 10 µs for an
    /// all-reduce over 8 NVLink GPUs), large ones Simple at the full bus bandwidth.
    pub fn nccl_time(&self, collective: Collective, bytes: f64, size: u32) -> f64 {
        if size <= 1 || bytes <= 0.0 {
            return 0.0;
        }
        let n = f64::from(size);
        let domains = f64::from(size.div_ceil(self.members_per_domain(size, 1)));
        let (steps, inter_steps, traffic) = match collective {
            Collective::AllReduce => (2.0 * (n - 1.0), 2.0 * (domains - 1.0), 2.0 * (n - 1.0) / n),
            Collective::ReduceScatter | Collective::AllGather => {
                (n - 1.0, domains - 1.0, (n - 1.0) / n)
            }
        };
        let bus = self.collective_bw(size);
        (0..3)
            .map(|p| {
                let latency = NCCL_BASE_LATENCY_S[p]
                    + (steps - inter_steps) * NCCL_NVLINK_STEP_LATENCY_S[p]
                    + inter_steps * NCCL_NET_STEP_LATENCY_S[p];
                latency + traffic * bytes / (bus * NCCL_PROTOCOL_BANDWIDTH[p])
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// [`Hardware::group_bw`] of a group of consecutive ranks (stride 1) spanning `span`.
    pub fn collective_bw(&self, span: u32) -> f64 {
        self.group_bw(span, 1)
    }

    /// Usable HBM per device for the job, bytes.
    pub fn usable_memory_bytes(&self) -> f64 {
        (self.accelerator.hbm_gib * USABLE_MEMORY_FRACTION - RESERVED_MEMORY_GIB).max(0.0) * GIB
    }

    pub fn hbm_bytes_per_s(&self) -> f64 {
        self.accelerator.hbm_tb_s * 1e12
    }
}

pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Kernel-level facts about one accelerator that the catalog does not carry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelFacts {
    /// Fraction of the dense BF16 peak that large, square cuBLAS/CUTLASS GEMMs sustain.
    pub gemm_bf16: f64,
    /// Fraction of the dense FP8 peak that large FP8 GEMMs sustain.
    pub gemm_fp8: f64,
    /// Streaming multiprocessors (or equivalent matrix-engine groups) a GEMM's tiles are spread over.
    pub sms: u32,
    /// Output tile of the library's large GEMM kernels, rows × columns.
    pub tile_m: u32,
    pub tile_n: u32,
    /// k-extent a GEMM tile's software-pipeline fill and epilogue cost (see `gemm_time`).
    pub k_overhead: f64,
    /// Fraction of the BF16 peak FlashAttention-class fused attention reaches, forward.
    pub attention_fwd: f64,
    /// Same, backward.
    pub attention_bwd: f64,
    /// How much of its usual fraction of peak a kernel built without the generation's newest
    /// matrix instructions keeps (Hopper: `mma.sync` instead of `wgmma`/TMA). FlashAttention-2,
    /// an `mma.sync` kernel, reaches about 0.7 of the A100 peak but only about 0.35 of the H100
    /// peak (Shah et al. 2024, FlashAttention-3, §4.1): 0.5. 1 where there is no such split.
    pub legacy_mma: f64,
}

/// FlashAttention in Triton (2023 compilers) reaches about 0.45 of peak forward and 0.3
/// backward on A100 (Triton fused-attention tutorial and flash_attn_triton benchmarks,
/// head dim 64-128, with an additive bias), times [`KernelFacts::legacy_mma`] elsewhere.
pub const TRITON_ATTENTION_FWD: f64 = 0.45;
pub const TRITON_ATTENTION_BWD: f64 = 0.3;

/// Per-generation kernel facts.
///
/// * A100: cuBLAS BF16 GEMMs of 8,192³ reach about 270-285 of 312 TFLOP/s (0.87-0.91); CUTLASS
///   Ampere kernels use 128×128 (or 256×128) tiles over 108 SMs. FlashAttention-2 (Dao 2023,
///   Fig. 4-5): forward about 170-190 TFLOP/s (0.55) and backward about 130 (0.42) for causal
///   head dim 64-128.
/// * H100/H200/H800/H20/GH200 (Hopper, 132 SMs on SXM; the PCIe part's 114 and the H20's
///   smaller count are not distinguished): cuBLAS BF16 8,192³ about 750-800 of 989 TFLOP/s in
///   short runs (0.77) but about 650 sustained at the 700 W limit (clock throttling under
///   sustained tensor load): 0.66; FP8 about 1,300-1,450 of 1,979 (0.7). Hopper kernels use 128×256
///   warp-specialised tiles; `mma.sync` (pre-Hopper) kernels keep about half their A100 efficiency. Fused attention (cuDNN / FA3,
///   Shah et al. 2024, Fig. 5-7): forward 550-650 TFLOP/s (0.6), backward 400-500 (0.45);
///   FlashAttention-2 on Hopper reaches only about 0.35 — the figure here is for the cuDNN/FA3
///   kernels current frameworks use.
/// * Blackwell (B200/B300/GB200/GB300, 148 SMs): no independent large-GEMM measurements were
///   used; Hopper's unthrottled BF16 fraction (0.77, given the 1,000-1,400 W budget) and its
///   FP8 and attention fractions are assumed.
/// * Others (TPU, Trainium, MI300X, Gaudi): ASSUMPTION 0.75 / 0.65 of peak (MLPerf-era MFU of
///   these systems is similar to Hopper's), 128×128 tiles.
pub fn kernel_facts(a: &Accelerator) -> KernelFacts {
    let name = a.name;
    if name.starts_with("A100") {
        KernelFacts {
            gemm_bf16: 0.8,
            gemm_fp8: 0.8,
            sms: 108,
            tile_m: 128,
            tile_n: 128,
            k_overhead: 128.0,
            attention_fwd: 0.55,
            attention_bwd: 0.42,
            legacy_mma: 1.0,
        }
    } else if name.starts_with("H100")
        || name.starts_with("GH200")
        || name == "H200"
        || name == "H800"
        || name == "H20"
    {
        KernelFacts {
            gemm_bf16: 0.66,
            gemm_fp8: 0.7,
            sms: 132,
            tile_m: 128,
            tile_n: 256,
            k_overhead: 256.0,
            attention_fwd: 0.6,
            attention_bwd: 0.45,
            legacy_mma: 0.5,
        }
    } else if name.starts_with('B') || name.starts_with("GB") {
        KernelFacts {
            gemm_bf16: 0.77,
            gemm_fp8: 0.7,
            sms: 148,
            tile_m: 128,
            tile_n: 256,
            k_overhead: 256.0,
            attention_fwd: 0.6,
            attention_bwd: 0.45,
            legacy_mma: 0.5,
        }
    } else {
        let sms = match a.vendor {
            Vendor::Nvidia => 80,
            _ => 64,
        };
        KernelFacts {
            gemm_bf16: 0.75,
            gemm_fp8: 0.65,
            sms,
            tile_m: 128,
            tile_n: 128,
            k_overhead: 128.0,
            attention_fwd: 0.5,
            attention_bwd: 0.4,
            legacy_mma: 1.0,
        }
    }
}

/// Expected number of `groups` equal shares of `experts` that hold at least one of a token's
/// `k` distinct experts under uniform routing: `groups · (1 − C(E − E/groups, k) / C(E, k))`.
/// Exactly `k` when every group holds one expert; `k` also when a group would hold less than
/// one (an expert never spans expert-parallel members).
pub fn groups_holding(k: u32, experts: u32, groups: f64) -> f64 {
    let e = f64::from(experts.max(1));
    if groups <= 1.0 {
        return 1.0;
    }
    if e / groups <= 1.0 {
        return f64::from(k.min(experts.max(1)));
    }
    let outside = e - e / groups;
    let mut missed = 1.0;
    for i in 0..k.min(experts) {
        missed *= ((outside - f64::from(i)) / (e - f64::from(i))).max(0.0);
        if missed < f64::EPSILON {
            // Every group holds one of the token's experts, to within rounding.
            return groups;
        }
    }
    groups * (1.0 - missed)
}
