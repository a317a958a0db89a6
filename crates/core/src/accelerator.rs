//! The built-in accelerator catalog.
//!
//! Every figure is the vendor's published peak (dense, i.e. without 2:4 structured sparsity) or a
//! labelled assumption where nobody published one. Bandwidths are **per chip, per direction**, in
//! GB/s (10^9 bytes/s): vendors usually quote NVLink/ICI as the bidirectional total, so those
//! figures are halved here; network figures (Gb/s per NIC) are divided by 8.
//!
//! | name | source |
//! |---|---|
//! | A100-40GB / A100-80GB | NVIDIA A100 Tensor Core GPU datasheet (2021), SXM column |
//! | H100-SXM | NVIDIA H100 Tensor Core GPU datasheet (2023), H100 SXM column; DGX H100 user guide (ConnectX-7 400 Gb/s per GPU) |
//! | H100-SXM-96GB | Meta "Building Meta's GenAI infrastructure" (2024) and the calibration README: 96 GB HBM2e, 500 W |
//! | H200 | NVIDIA H200 Tensor Core GPU datasheet (2024), SXM column |
//! | H800 | NVIDIA H800 SXM product brief; DeepSeek-V3 technical report §3.1 (400 GB/s NVLink, 400 Gb/s IB per GPU) |
//! | B200 / B300 | NVIDIA DGX B200 and HGX B300 datasheets (2024-2025) |
//! | GB200 / GB300 | NVIDIA GB200 NVL72 and GB300 NVL72 product pages (rack totals divided by 72) |
//! | TPU-v4 / v5e / v5p / v6e | Google Cloud TPU system architecture documentation (per-chip tables) |
//! | Trainium1 / Trainium2 | AWS Neuron documentation, "Trainium / Trainium2 architecture"; EC2 Trn1/Trn2 instance pages |
//! | MI300X | AMD Instinct MI300X datasheet (2023) |
//! | Gaudi2 | Intel Gaudi 2 AI accelerator white paper (2022) |
//! | MI325X / MI355X | AMD Instinct product pages (2024-2025); ROCm distributed-inference guides for the NICs |
//! | Gaudi3 | Intel Gaudi 3 white paper (2024); Intel Gaudi network configuration documentation |
//! | H100-PCIe / H100-NVL | NVIDIA H100 architecture whitepaper (Table 3), H100 product page and H100 NVL product brief |
//! | GH200 / GH200-144GB | NVIDIA GH200 Grace Hopper Superchip product page; MLPerf Inference v4.1 system descriptions |
//! | H20 | no NVIDIA datasheet: LMSYS/Ant Group and TechPowerUp figures (labelled in `notes`) |
//! | L40S / L4 | NVIDIA L40S and L4 datasheets |
//! | TPU-v7 | Google Cloud TPU7x (Ironwood) documentation |
//! | K80 / P100 / V100 / T4 / A10 | NVIDIA product datasheets of each generation (needed by the public cluster traces) |

use serde::Serialize;

/// Who makes the chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Nvidia,
    Google,
    Aws,
    Amd,
    Intel,
}

/// The fast fabric a group of chips shares (NVLink, ICI, NeuronLink, Infinity Fabric).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScaleUp {
    /// Largest number of chips on one scale-up fabric.
    pub domain: u32,
    /// Per-chip bandwidth on that fabric, per direction, GB/s.
    pub gb_s: f64,
    /// The fabric's name.
    pub fabric: &'static str,
}

/// One accelerator model and its published figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accelerator {
    /// Canonical name, as the calibration data and fleet files write it.
    pub name: &'static str,
    /// Other spellings that resolve to this entry (matched case-insensitively).
    pub aliases: &'static [&'static str],
    pub vendor: Vendor,
    /// Dense BF16 peak, TFLOP/s. Chips without BF16 give their fastest training rate
    /// (FP16 tensor cores; FP32 on the K80), as noted in `notes`.
    pub bf16_tflops: f64,
    /// Dense FP8 peak, TFLOP/s; `None` where the chip has no FP8 arithmetic.
    pub fp8_tflops: Option<f64>,
    /// High-bandwidth memory per chip, GiB.
    pub hbm_gib: f64,
    /// Memory bandwidth, TB/s.
    pub hbm_tb_s: f64,
    pub scale_up: ScaleUp,
    /// Typical scale-out (data-centre network) bandwidth per chip, per direction, GB/s.
    pub scale_out_gb_s: f64,
    /// Chips per server/host in the usual system (the default `accelerators_per_node`).
    pub per_node: u32,
    /// Board (module) power, W.
    pub power_w: f64,
    /// Source of the figures and any labelled assumptions.
    pub notes: &'static str,
}

impl Accelerator {
    /// The number format `bf16_tflops` is the rate of: `"BF16"`, or on chips without BF16 the
    /// one they train in (`"FP16"` with loss scaling on Volta, Pascal and Turing; `"FP32"` on
    /// the K80, which has no 16-bit matrix math).
    pub fn training_format(&self) -> &'static str {
        match self.name {
            "V100" | "V100-32GB" | "P100" | "P100-PCIE" | "T4" => "FP16",
            "K80" => "FP32",
            _ => "BF16",
        }
    }

    /// Dense peak for a precision, TFLOP/s. FP8 on a chip without it is `None`.
    pub fn peak_tflops(&self, fp8: bool) -> Option<f64> {
        if fp8 {
            self.fp8_tflops
        } else {
            Some(self.bf16_tflops)
        }
    }

    /// Whether the scale-up fabric reaches beyond one server (an NVL72 rack, a TPU pod, a Trn2
    /// UltraServer): its domain is larger than the usual server. Otherwise (NVLink on an HGX
    /// board, bridged PCIe cards) it lies inside the server, and a server holding fewer chips
    /// has a fabric that small.
    pub fn fabric_spans_servers(&self) -> bool {
        self.scale_up.domain > self.per_node
    }

    /// Chips on one scale-up fabric in servers of `per_node` chips: the fabric's domain where it
    /// spans servers; otherwise at most the server.
    pub fn scale_up_domain_in_servers_of(&self, per_node: u32) -> u32 {
        if self.fabric_spans_servers() {
            self.scale_up.domain
        } else {
            self.scale_up.domain.min(per_node)
        }
        .max(1)
    }

    /// Whether `name` is this accelerator's canonical name or one of its aliases.
    pub fn matches(&self, name: &str) -> bool {
        let wanted = normalize(name);
        normalize(self.name) == wanted || self.aliases.iter().any(|a| normalize(a) == wanted)
    }
}

/// Case-, space-, dash- and underscore-insensitive form of a name.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Looks an accelerator up by canonical name or alias.
pub fn lookup(name: &str) -> Option<&'static Accelerator> {
    CATALOG.iter().find(|a| a.matches(name))
}

/// Every accelerator the catalog knows, in a stable order.
pub fn catalog() -> &'static [Accelerator] {
    CATALOG
}

/// Canonical names, for error messages that list what was expected.
pub fn names() -> Vec<&'static str> {
    CATALOG.iter().map(|a| a.name).collect()
}

const NVLINK3: &str = "NVLink 3 (NVSwitch)";
const NVLINK4: &str = "NVLink 4 (NVSwitch)";
const NVLINK5: &str = "NVLink 5 (NVSwitch)";

static CATALOG: &[Accelerator] = &[
    Accelerator {
        name: "A100-40GB",
        aliases: &["A100", "A100-SXM4-40GB"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 312.0,
        fp8_tflops: None,
        hbm_gib: 40.0,
        hbm_tb_s: 1.555,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 300.0,
            fabric: NVLINK3,
        },
        scale_out_gb_s: 25.0,
        per_node: 8,
        power_w: 400.0,
        notes: "A100 datasheet: 312 TFLOP/s BF16 dense, 1,555 GB/s HBM2, NVLink 600 GB/s bidirectional; DGX A100: one 200 Gb/s HDR NIC per GPU",
    },
    Accelerator {
        name: "A100-80GB",
        aliases: &["A100-SXM4-80GB", "A100-80G"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 312.0,
        fp8_tflops: None,
        hbm_gib: 80.0,
        hbm_tb_s: 2.039,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 300.0,
            fabric: NVLINK3,
        },
        scale_out_gb_s: 25.0,
        per_node: 8,
        power_w: 400.0,
        notes: "A100 datasheet: 312 TFLOP/s BF16 dense, 2,039 GB/s HBM2e, NVLink 600 GB/s bidirectional; DGX A100: one 200 Gb/s HDR NIC per GPU",
    },
    Accelerator {
        name: "H100-SXM",
        aliases: &[
            "H100",
            "H100-SXM5",
            "H100-SXM-80GB",
            "H100-SXM5-80GB",
            "DGX-H100",
            "H100 80GB HBM3",
        ],
        vendor: Vendor::Nvidia,
        bf16_tflops: 989.4,
        fp8_tflops: Some(1978.9),
        hbm_gib: 80.0,
        hbm_tb_s: 3.35,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 450.0,
            fabric: NVLINK4,
        },
        scale_out_gb_s: 50.0,
        per_node: 8,
        power_w: 700.0,
        notes: "H100 datasheet (SXM): 989 TFLOP/s BF16 and 1,979 FP8 dense, 3.35 TB/s HBM3, NVLink 900 GB/s bidirectional; DGX H100: one 400 Gb/s ConnectX-7 per GPU",
    },
    Accelerator {
        name: "H100-SXM-96GB",
        aliases: &["H100-96GB", "H100-SXM5-96GB"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 989.4,
        fp8_tflops: Some(1978.9),
        hbm_gib: 96.0,
        hbm_tb_s: 3.35,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 450.0,
            fabric: NVLINK4,
        },
        scale_out_gb_s: 50.0,
        per_node: 8,
        power_w: 500.0,
        notes: "Meta Grand Teton H100 with 96 GB HBM2e at a 500 W limit; ASSUMPTION: peak and bandwidths as the H100 SXM datasheet (no separate datasheet published)",
    },
    Accelerator {
        name: "H200",
        aliases: &["H200-SXM", "H200-SXM-141GB"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 989.4,
        fp8_tflops: Some(1978.9),
        hbm_gib: 140.0,
        hbm_tb_s: 4.8,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 450.0,
            fabric: NVLINK4,
        },
        scale_out_gb_s: 50.0,
        per_node: 8,
        power_w: 700.0,
        notes: "H200 datasheet (SXM): 141 GB HBM3e (nvidia-smi: 143,771 MiB, about 140 GiB), 4.8 TB/s, H100 compute, NVLink 900 GB/s bidirectional; 400 Gb/s NIC per GPU in HGX H200",
    },
    Accelerator {
        name: "H800",
        aliases: &["H800-SXM", "H800-SXM5"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 989.4,
        fp8_tflops: Some(1978.9),
        hbm_gib: 80.0,
        hbm_tb_s: 3.35,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 200.0,
            fabric: NVLINK4,
        },
        scale_out_gb_s: 50.0,
        per_node: 8,
        power_w: 700.0,
        notes: "H800 SXM: H100 compute and memory with NVLink cut to 400 GB/s bidirectional; DeepSeek-V3 report §3.1: 8 GPUs per node, 400 Gb/s InfiniBand per GPU",
    },
    Accelerator {
        name: "B200",
        aliases: &["B200-SXM", "HGX-B200", "DGX-B200"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 2250.0,
        fp8_tflops: Some(4500.0),
        hbm_gib: 180.0,
        hbm_tb_s: 8.0,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 900.0,
            fabric: NVLINK5,
        },
        scale_out_gb_s: 50.0,
        per_node: 8,
        power_w: 1000.0,
        notes: "DGX B200 datasheet: 72 PFLOP/s FP8 training (sparse) per 8 GPUs = 4.5 dense each, BF16 half of that; 1,440 GB HBM3e per 8 GPUs at 64 TB/s; NVLink 5 1.8 TB/s bidirectional; ConnectX-7 400 Gb/s per GPU",
    },
    Accelerator {
        name: "B300",
        aliases: &["B300-SXM", "HGX-B300", "DGX-B300", "Blackwell Ultra"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 2250.0,
        fp8_tflops: Some(4500.0),
        hbm_gib: 270.0,
        hbm_tb_s: 8.0,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 900.0,
            fabric: NVLINK5,
        },
        scale_out_gb_s: 100.0,
        per_node: 8,
        power_w: 1100.0,
        notes: "HGX B300 datasheet: 2.1 TB HBM3e per 8 GPUs (about 270 GB each), 8 TB/s, NVLink 5 1.8 TB/s bidirectional, ConnectX-8 800 Gb/s per GPU; dense BF16/FP8 as B200 (Blackwell Ultra adds FP4 and attention throughput, not BF16)",
    },
    Accelerator {
        name: "GB200",
        aliases: &["GB200-NVL72"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 2500.0,
        fp8_tflops: Some(5000.0),
        hbm_gib: 186.0,
        hbm_tb_s: 8.0,
        scale_up: ScaleUp {
            domain: 72,
            gb_s: 900.0,
            fabric: NVLINK5,
        },
        scale_out_gb_s: 50.0,
        per_node: 4,
        power_w: 1200.0,
        notes: "GB200 NVL72 page: 360 PFLOP/s BF16 and 720 FP8 sparse per 72 GPUs (2.5 and 5 PFLOP/s dense each), 13.4 TB HBM3e (186 GB each) at 576 TB/s, 72-GPU NVLink domain at 1.8 TB/s bidirectional per GPU, 4 GPUs per compute tray; ASSUMPTION: 1,200 W per GPU (2,700 W per 2-GPU superchip incl. Grace), 400 Gb/s NIC per GPU",
    },
    Accelerator {
        name: "GB300",
        aliases: &["GB300-NVL72"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 2500.0,
        fp8_tflops: Some(5000.0),
        hbm_gib: 279.0,
        hbm_tb_s: 8.0,
        scale_up: ScaleUp {
            domain: 72,
            gb_s: 900.0,
            fabric: NVLINK5,
        },
        scale_out_gb_s: 100.0,
        per_node: 4,
        power_w: 1400.0,
        notes: "GB300 NVL72 page: 20 TB HBM3e per 72 GPUs (279 GB each), 576 TB/s, 72-GPU NVLink 5 domain, ConnectX-8 800 Gb/s per GPU; dense BF16/FP8 as GB200; 1,400 W per GPU (NVIDIA Blackwell Ultra TGP)",
    },
    Accelerator {
        name: "TPU-v4",
        aliases: &["v4"],
        vendor: Vendor::Google,
        bf16_tflops: 275.0,
        fp8_tflops: None,
        hbm_gib: 32.0,
        hbm_tb_s: 1.2,
        scale_up: ScaleUp {
            domain: 4096,
            gb_s: 150.0,
            fabric: "ICI 3D torus (optical circuit switches)",
        },
        scale_out_gb_s: 12.5,
        per_node: 4,
        power_w: 192.0,
        notes: "Cloud TPU v4 docs: 275 TFLOP/s BF16, 32 GiB HBM2 at 1,200 GB/s, 4,096-chip pods, ICI 2,400 Gb/s per chip (300 GB/s, halved per direction); Jouppi et al. ISCA'23: 192 W max; ASSUMPTION: 100 Gb/s DCN per chip",
    },
    Accelerator {
        name: "TPU-v5e",
        aliases: &["v5e", "TPU-v5-lite"],
        vendor: Vendor::Google,
        bf16_tflops: 197.0,
        fp8_tflops: None,
        hbm_gib: 16.0,
        hbm_tb_s: 0.819,
        scale_up: ScaleUp {
            domain: 256,
            gb_s: 100.0,
            fabric: "ICI 2D torus",
        },
        scale_out_gb_s: 12.5,
        per_node: 4,
        power_w: 200.0,
        notes: "Cloud TPU v5e docs: 197 TFLOP/s BF16, 16 GiB HBM2 at 819 GB/s, 256-chip pods, ICI 1,600 Gb/s per chip; ASSUMPTION: 100 Gb/s DCN per chip and 200 W (not published)",
    },
    Accelerator {
        name: "TPU-v5p",
        aliases: &["v5p"],
        vendor: Vendor::Google,
        bf16_tflops: 459.0,
        fp8_tflops: None,
        hbm_gib: 95.0,
        hbm_tb_s: 2.765,
        scale_up: ScaleUp {
            domain: 8960,
            gb_s: 300.0,
            fabric: "ICI 3D torus (optical circuit switches)",
        },
        scale_out_gb_s: 25.0,
        per_node: 4,
        power_w: 400.0,
        notes: "Cloud TPU v5p docs: 459 TFLOP/s BF16, 95 GiB HBM2e at 2,765 GB/s, 8,960-chip pods, ICI 4,800 Gb/s per chip; ASSUMPTION: 200 Gb/s DCN per chip and 400 W (not published)",
    },
    Accelerator {
        name: "TPU-v6e",
        aliases: &["v6e", "Trillium"],
        vendor: Vendor::Google,
        bf16_tflops: 918.0,
        fp8_tflops: None,
        hbm_gib: 32.0,
        hbm_tb_s: 1.64,
        scale_up: ScaleUp {
            domain: 256,
            gb_s: 224.0,
            fabric: "ICI 2D torus",
        },
        scale_out_gb_s: 25.0,
        per_node: 8,
        power_w: 300.0,
        notes: "Cloud TPU v6e (Trillium) docs: 918 TFLOP/s BF16, 32 GiB HBM at 1,640 GB/s, 256-chip pods, ICI 3,584 Gb/s per chip, 8 chips per host; ASSUMPTION: 200 Gb/s DCN per chip and 300 W (not published)",
    },
    Accelerator {
        name: "Trainium1",
        aliases: &["Trn1", "Trainium", "trn1.32xlarge"],
        vendor: Vendor::Aws,
        bf16_tflops: 190.0,
        fp8_tflops: Some(190.0),
        hbm_gib: 32.0,
        hbm_tb_s: 0.82,
        scale_up: ScaleUp {
            domain: 16,
            gb_s: 192.0,
            fabric: "NeuronLink v2 (2D torus)",
        },
        scale_out_gb_s: 6.25,
        per_node: 16,
        power_w: 400.0,
        notes: "AWS Neuron docs (Trainium architecture): 190 TFLOP/s BF16 and FP8, 32 GiB HBM at 820 GB/s, NeuronLink-v2 384 GB/s per chip; trn1.32xlarge: 16 chips, 800 Gb/s EFA (50 Gb/s per chip); ASSUMPTION: 400 W",
    },
    Accelerator {
        name: "Trainium2",
        aliases: &["Trn2", "trn2.48xlarge", "Trn2-UltraServer"],
        vendor: Vendor::Aws,
        bf16_tflops: 667.0,
        fp8_tflops: Some(1299.0),
        hbm_gib: 96.0,
        hbm_tb_s: 2.9,
        scale_up: ScaleUp {
            domain: 64,
            gb_s: 512.0,
            fabric: "NeuronLink v3 (UltraServer: 4 Trn2 instances)",
        },
        scale_out_gb_s: 25.0,
        per_node: 16,
        power_w: 500.0,
        notes: "AWS Neuron docs (Trainium2 architecture): 667 TFLOP/s BF16 and 1,299 FP8 dense, 96 GiB HBM at 2.9 TB/s, NeuronLink-v3 1 TB/s per chip; trn2.48xlarge: 16 chips, 3.2 Tb/s EFAv3 (200 Gb/s per chip); Trn2 UltraServer: 64 chips on one NeuronLink domain; ASSUMPTION: 500 W",
    },
    Accelerator {
        name: "MI300X",
        aliases: &["AMD-MI300X", "Instinct MI300X"],
        vendor: Vendor::Amd,
        bf16_tflops: 1307.4,
        fp8_tflops: Some(2614.9),
        hbm_gib: 192.0,
        hbm_tb_s: 5.3,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 448.0,
            fabric: "Infinity Fabric (fully connected, 7 links)",
        },
        scale_out_gb_s: 50.0,
        per_node: 8,
        power_w: 750.0,
        notes: "AMD MI300X datasheet: 1,307 TFLOP/s BF16 and 2,615 FP8 dense, 192 GB HBM3 at 5.3 TB/s, 896 GB/s aggregate Infinity Fabric peer bandwidth, 750 W; 400 Gb/s NIC per GPU in typical 8-GPU platforms",
    },
    Accelerator {
        name: "Gaudi2",
        aliases: &["HL-225H", "Intel Gaudi2"],
        vendor: Vendor::Intel,
        bf16_tflops: 432.0,
        fp8_tflops: Some(865.0),
        hbm_gib: 96.0,
        hbm_tb_s: 2.46,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 262.5,
            fabric: "21 x 100 GbE RoCE (all-to-all in the node)",
        },
        scale_out_gb_s: 37.5,
        per_node: 8,
        power_w: 600.0,
        notes: "Intel Gaudi 2 white paper: 24 x 100 GbE on chip (21 for scale-up, 3 for scale-out), 96 GB HBM2e at 2.46 TB/s, 600 W; MLPerf-era figures: about 432 TFLOP/s BF16 and 865 FP8 (MME)",
    },
    Accelerator {
        name: "MI325X",
        aliases: &["AMD-MI325X", "Instinct MI325X"],
        vendor: Vendor::Amd,
        bf16_tflops: 1307.4,
        fp8_tflops: Some(2614.9),
        hbm_gib: 256.0,
        hbm_tb_s: 6.0,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 448.0,
            fabric: "Infinity Fabric (fully connected, 7 links)",
        },
        scale_out_gb_s: 50.0,
        per_node: 8,
        power_w: 1000.0,
        notes: "AMD Instinct MI325X product page: 1,307.4 TFLOP/s BF16 and 2,614.9 FP8 dense, 256 GB HBM3E at 6 TB/s, 7 Infinity Fabric links of 128 GB/s (896 GB/s aggregate, halved here as for MI300X); one 400 Gb/s NIC per GPU (ROCm distributed-inference guides); 1,000 W from secondary sources",
    },
    Accelerator {
        name: "MI355X",
        aliases: &["AMD-MI355X", "Instinct MI355X"],
        vendor: Vendor::Amd,
        bf16_tflops: 2516.6,
        fp8_tflops: Some(5033.2),
        hbm_gib: 288.0,
        hbm_tb_s: 8.0,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 537.6,
            fabric: "Infinity Fabric (fully connected, 7 links)",
        },
        scale_out_gb_s: 50.0,
        per_node: 8,
        power_w: 1400.0,
        notes: "AMD Instinct MI355X product page: 2.5 PFLOP/s BF16 and 5.0 FP8 dense (2,516.6 / 5,033.2), 288 GB HBM3E at 8 TB/s, 7 Infinity Fabric links of 153.6 GB/s (1,075 GB/s aggregate, halved here), 1,400 W; one 400 Gb/s Pollara NIC per GPU (ROCm distributed-inference guides)",
    },
    Accelerator {
        name: "Gaudi3",
        aliases: &["HL-325L", "Intel Gaudi3"],
        vendor: Vendor::Intel,
        bf16_tflops: 1835.0,
        fp8_tflops: Some(1835.0),
        hbm_gib: 128.0,
        hbm_tb_s: 3.7,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 525.0,
            fabric: "21 x 200 GbE RoCE (all-to-all in the node)",
        },
        scale_out_gb_s: 75.0,
        per_node: 8,
        power_w: 900.0,
        notes: "Intel Gaudi 3 white paper: 1,835 TFLOP/s BF16 and FP8 (matrix engines), 128 GB HBM2e at 3.7 TB/s, 900 W (HL-325L OAM); Intel Gaudi network configuration docs: 21 x 200 GbE for scale-up (525 GB/s per direction) and 3 x 200 GbE scale-out (600 Gb/s) per card. Shipping parts are reported to clock the matrix engines lower (about 1,677 TFLOP/s)",
    },
    Accelerator {
        name: "H100-PCIe",
        aliases: &["H100-PCIE-80GB"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 756.0,
        fp8_tflops: Some(1513.0),
        hbm_gib: 80.0,
        hbm_tb_s: 2.0,
        scale_up: ScaleUp {
            domain: 2,
            gb_s: 300.0,
            fabric: "NVLink bridge (pairs)",
        },
        scale_out_gb_s: 25.0,
        per_node: 8,
        power_w: 350.0,
        notes: "NVIDIA H100 architecture whitepaper Table 3, H100 PCIe: 756 TFLOP/s BF16 and 1,513 FP8 dense (a later datasheet prints 800 / 1,600), 80 GB HBM2e at 2 TB/s, 350 W; NVLink bridge 600 GB/s bidirectional between a pair; ASSUMPTION: 200 Gb/s network per GPU",
    },
    Accelerator {
        name: "H100-NVL",
        aliases: &["H100-NVL-94GB"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 835.5,
        fp8_tflops: Some(1670.5),
        hbm_gib: 94.0,
        hbm_tb_s: 3.9,
        scale_up: ScaleUp {
            domain: 2,
            gb_s: 300.0,
            fabric: "NVLink bridge (pairs)",
        },
        scale_out_gb_s: 25.0,
        per_node: 8,
        power_w: 400.0,
        notes: "NVIDIA H100 product page and H100 NVL product brief: 1,671 / 3,341 TFLOP/s BF16 / FP8 with sparsity (halved here), 94 GB HBM3 at 3.9 TB/s, 350-400 W, NVLink bridge 600 GB/s bidirectional; ASSUMPTION: 200 Gb/s network per GPU",
    },
    Accelerator {
        name: "GH200",
        aliases: &["GH200-96GB", "Grace Hopper", "GH200 Grace Hopper Superchip"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 989.4,
        fp8_tflops: Some(1978.9),
        hbm_gib: 96.0,
        hbm_tb_s: 4.0,
        scale_up: ScaleUp {
            domain: 2,
            gb_s: 450.0,
            fabric: "NVLink 4 (GH200 NVL2)",
        },
        scale_out_gb_s: 50.0,
        per_node: 2,
        power_w: 1000.0,
        notes: "NVIDIA GH200 Grace Hopper Superchip: the H100 SXM GPU (989 / 1,979 TFLOP/s BF16 / FP8 dense), 96 GB HBM3 at 4 TB/s, NVLink 900 GB/s bidirectional; GH200 NVL2 platform (2 per node) with one 400 Gb/s NIC per superchip (MLPerf Inference v4.1 system descriptions); 1,000 W is the whole CPU+GPU module's upper setting",
    },
    Accelerator {
        name: "GH200-144GB",
        aliases: &["GH200-HBM3e"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 989.4,
        fp8_tflops: Some(1978.9),
        hbm_gib: 144.0,
        hbm_tb_s: 4.9,
        scale_up: ScaleUp {
            domain: 2,
            gb_s: 450.0,
            fabric: "NVLink 4 (GH200 NVL2)",
        },
        scale_out_gb_s: 50.0,
        per_node: 2,
        power_w: 1000.0,
        notes: "NVIDIA GH200 with 144 GB HBM3e at 4.9 TB/s; otherwise as GH200 (MLPerf Inference v4.1 GH200-144GB system descriptions)",
    },
    Accelerator {
        name: "H20",
        aliases: &["H20-96GB", "NVIDIA H20"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 148.0,
        fp8_tflops: Some(296.0),
        hbm_gib: 96.0,
        hbm_tb_s: 4.0,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 450.0,
            fabric: "NVLink 4 + NVSwitch",
        },
        scale_out_gb_s: 50.0,
        per_node: 8,
        power_w: 400.0,
        notes: "No NVIDIA datasheet is published; figures as reported by LMSYS/Ant Group and TechPowerUp: 148 / 296 TFLOP/s BF16 / FP8 dense, 96 GB HBM3 at 4 TB/s, NVLink 900 GB/s bidirectional, 400 W, 8-GPU HGX; ASSUMPTION: 400 Gb/s network per GPU",
    },
    Accelerator {
        name: "L40S",
        aliases: &["L40S-48GB", "NVIDIA L40S"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 362.05,
        fp8_tflops: Some(733.0),
        hbm_gib: 48.0,
        hbm_tb_s: 0.864,
        scale_up: ScaleUp {
            domain: 1,
            gb_s: 32.0,
            fabric: "PCIe 4.0",
        },
        scale_out_gb_s: 25.0,
        per_node: 8,
        power_w: 350.0,
        notes: "NVIDIA L40S datasheet: 362 / 733 TFLOP/s BF16 / FP8 dense, 48 GB GDDR6 at 864 GB/s, PCIe Gen4 x16 (no NVLink), 350 W; ASSUMPTION: 8 per server, 200 Gb/s network per GPU",
    },
    Accelerator {
        name: "L4",
        aliases: &["L4-24GB", "NVIDIA L4"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 121.0,
        fp8_tflops: Some(242.5),
        hbm_gib: 24.0,
        hbm_tb_s: 0.3,
        scale_up: ScaleUp {
            domain: 1,
            gb_s: 32.0,
            fabric: "PCIe 4.0",
        },
        scale_out_gb_s: 12.5,
        per_node: 8,
        power_w: 72.0,
        notes: "NVIDIA L4 datasheet: 242 / 485 TFLOP/s BF16 / FP8 with sparsity (halved here), 24 GB GDDR6 at 300 GB/s, 72 W; ASSUMPTION: 8 per server, 100 Gb/s network per GPU",
    },
    Accelerator {
        name: "TPU-v7",
        aliases: &["TPU7x", "v7", "Ironwood", "TPU-Ironwood"],
        vendor: Vendor::Google,
        bf16_tflops: 2307.0,
        fp8_tflops: Some(4614.0),
        hbm_gib: 192.0,
        hbm_tb_s: 7.38,
        scale_up: ScaleUp {
            domain: 9216,
            gb_s: 600.0,
            fabric: "ICI 3D torus with optical circuit switches",
        },
        scale_out_gb_s: 12.5,
        per_node: 4,
        power_w: 700.0,
        notes: "Cloud TPU7x (Ironwood) docs: 2,307 TFLOP/s BF16, 4,614 FP8, 192 GiB HBM at 7,380 GB/s, ICI 1,200 GB/s bidirectional, 9,216-chip pods, 4 chips and 100 Gb/s DCN per chip per VM; ASSUMPTION: 700 W (not published)",
    },
    Accelerator {
        name: "V100",
        aliases: &["V100-SXM2", "V100-SXM2-16GB", "V100-16GB", "Tesla V100"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 125.0,
        fp8_tflops: None,
        hbm_gib: 16.0,
        hbm_tb_s: 0.9,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 150.0,
            fabric: "NVLink 2 (hybrid cube mesh)",
        },
        scale_out_gb_s: 12.5,
        per_node: 8,
        power_w: 300.0,
        notes: "V100 datasheet (SXM2): 125 TFLOP/s FP16 tensor (no BF16), 16 GB HBM2 at 900 GB/s, NVLink 300 GB/s bidirectional, 300 W; ASSUMPTION: 100 Gb/s network per GPU",
    },
    Accelerator {
        name: "V100-32GB",
        aliases: &["V100-SXM2-32GB", "Tesla V100 32GB"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 125.0,
        fp8_tflops: None,
        hbm_gib: 32.0,
        hbm_tb_s: 0.9,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 150.0,
            fabric: "NVLink 2 (hybrid cube mesh)",
        },
        scale_out_gb_s: 12.5,
        per_node: 8,
        power_w: 300.0,
        notes: "V100 datasheet (SXM2, 32 GB): 125 TFLOP/s FP16 tensor (no BF16), 32 GB HBM2 at 900 GB/s, NVLink 300 GB/s bidirectional, 300 W; ASSUMPTION: 100 Gb/s network per GPU",
    },
    Accelerator {
        name: "P100",
        aliases: &["P100-SXM2", "Tesla P100"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 21.2,
        fp8_tflops: None,
        hbm_gib: 16.0,
        hbm_tb_s: 0.732,
        scale_up: ScaleUp {
            domain: 8,
            gb_s: 80.0,
            fabric: "NVLink 1 (hybrid cube mesh)",
        },
        scale_out_gb_s: 6.25,
        per_node: 8,
        power_w: 300.0,
        notes: "P100 datasheet (SXM2): 21.2 TFLOP/s FP16 (no BF16, no tensor cores), 16 GB HBM2 at 732 GB/s, NVLink 160 GB/s bidirectional, 300 W; ASSUMPTION: 50 Gb/s network per GPU",
    },
    Accelerator {
        name: "P100-PCIE",
        aliases: &["P100-PCIE-16GB", "Tesla P100 PCIe"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 18.7,
        fp8_tflops: None,
        hbm_gib: 16.0,
        hbm_tb_s: 0.732,
        scale_up: ScaleUp {
            domain: 1,
            gb_s: 16.0,
            fabric: "PCIe 3.0",
        },
        scale_out_gb_s: 6.25,
        per_node: 8,
        power_w: 250.0,
        notes: "P100 datasheet (PCIe, 16 GB): 18.7 TFLOP/s FP16 (no BF16, no tensor cores), 16 GB HBM2 at 732 GB/s, no NVLink (PCIe 3.0 x16, 32 GB/s bidirectional), 250 W; ASSUMPTION: 50 Gb/s network per GPU",
    },
    Accelerator {
        name: "K80",
        aliases: &["Tesla K80", "GK210"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 4.37,
        fp8_tflops: None,
        hbm_gib: 12.0,
        hbm_tb_s: 0.24,
        scale_up: ScaleUp {
            domain: 1,
            gb_s: 8.0,
            fabric: "PCIe 3.0",
        },
        scale_out_gb_s: 1.25,
        per_node: 8,
        power_w: 150.0,
        notes: "Tesla K80 datasheet: two GK210 GPUs per board, 8.73 TFLOP/s FP32 at boost and 480 GB/s GDDR5 per board (one GPU here is half a board); no 16-bit tensor math, FP32 rate given; 300 W per board; ASSUMPTION: 10 Gb/s network per GPU",
    },
    Accelerator {
        name: "T4",
        aliases: &["Tesla T4"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 65.0,
        fp8_tflops: None,
        hbm_gib: 16.0,
        hbm_tb_s: 0.32,
        scale_up: ScaleUp {
            domain: 1,
            gb_s: 16.0,
            fabric: "PCIe 3.0",
        },
        scale_out_gb_s: 3.125,
        per_node: 8,
        power_w: 70.0,
        notes: "T4 datasheet: 65 TFLOP/s FP16 tensor (no BF16), 16 GB GDDR6 at 320 GB/s, 70 W; ASSUMPTION: 25 Gb/s network per GPU",
    },
    Accelerator {
        name: "A10",
        aliases: &["A10-24GB", "NVIDIA A10"],
        vendor: Vendor::Nvidia,
        bf16_tflops: 125.0,
        fp8_tflops: None,
        hbm_gib: 24.0,
        hbm_tb_s: 0.6,
        scale_up: ScaleUp {
            domain: 1,
            gb_s: 32.0,
            fabric: "PCIe 4.0",
        },
        scale_out_gb_s: 3.125,
        per_node: 4,
        power_w: 150.0,
        notes: "A10 datasheet: 125 TFLOP/s BF16 tensor dense, 24 GB GDDR6 at 600 GB/s, 150 W; ASSUMPTION: 25 Gb/s network per GPU",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for accel in catalog() {
            for name in std::iter::once(accel.name).chain(accel.aliases.iter().copied()) {
                assert!(
                    seen.insert(normalize(name)),
                    "{name} appears twice in the catalog"
                );
            }
        }
    }

    /// The chips whose sources say they lack BF16 are the ones costed in another format, and
    /// their rate is the one their notes quote.
    #[test]
    fn chips_without_bf16_name_the_format_they_train_in() {
        for accel in catalog() {
            let no_bf16 = accel.notes.contains("no BF16") || accel.notes.contains("FP32 rate");
            assert_eq!(
                accel.training_format() != "BF16",
                no_bf16,
                "{}: {}",
                accel.name,
                accel.notes
            );
            if no_bf16 {
                assert!(
                    accel.notes.contains(accel.training_format()),
                    "{}: {}",
                    accel.name,
                    accel.notes
                );
                assert!(accel.fp8_tflops.is_none(), "{}", accel.name);
            }
        }
    }

    #[test]
    fn lookup_is_lenient_about_spelling() {
        assert_eq!(lookup("h100 sxm").map(|a| a.name), Some("H100-SXM"));
        assert_eq!(lookup("DGX H100").map(|a| a.name), Some("H100-SXM"));
        assert_eq!(lookup("tpu_v5p").map(|a| a.name), Some("TPU-v5p"));
        assert_eq!(lookup("trn2").map(|a| a.name), Some("Trainium2"));
        assert!(lookup("H1000").is_none());
    }

    /// A variant's name leads to its own figures: the 32 GB V100 has 32 GB, a PCIe P100 no
    /// NVLink.
    #[test]
    fn variants_are_their_own_entries() {
        let memory = |name| lookup(name).map(|a| a.hbm_gib);
        assert_eq!(memory("V100-32GB"), Some(32.0));
        assert_eq!(memory("V100-SXM2-32GB"), Some(32.0));
        assert_eq!(memory("V100-16GB"), Some(16.0));
        assert_eq!(memory("V100"), Some(16.0));
        let domain = |name| lookup(name).map(|a| a.scale_up.domain);
        assert_eq!(domain("P100-PCIE"), Some(1));
        assert_eq!(domain("P100"), Some(8));
        for name in ["V100-32GB", "P100-PCIE"] {
            assert_eq!(lookup(name).map(Accelerator::training_format), Some("FP16"));
        }
    }

    #[test]
    fn figures_are_physical() {
        for a in catalog() {
            assert!(
                a.bf16_tflops > 0.0 && a.hbm_gib > 0.0 && a.hbm_tb_s > 0.0,
                "{}",
                a.name
            );
            assert!(
                a.scale_up.domain >= 1 && a.scale_up.gb_s > 0.0,
                "{}",
                a.name
            );
            assert!(
                a.scale_out_gb_s > 0.0 && a.power_w > 0.0 && a.per_node >= 1,
                "{}",
                a.name
            );
            if let Some(fp8) = a.fp8_tflops {
                assert!(fp8 >= a.bf16_tflops, "{}: FP8 slower than BF16", a.name);
            }
        }
    }

    #[test]
    fn every_calibration_name_resolves() {
        for name in [
            "A100-40GB",
            "A100-80GB",
            "H100-SXM",
            "H100-SXM-96GB",
            "H200",
            "H800",
            "B200",
            "B300",
            "GB200",
            "GB300",
            "TPU-v4",
            "TPU-v5e",
            "TPU-v5p",
            "TPU-v6e",
            "Gaudi2",
            "Trainium1",
            "Trainium2",
            "MI300X",
            "K80",
            "P100",
            "V100",
            "T4",
            "A10",
        ] {
            assert!(lookup(name).is_some(), "{name} missing from the catalog");
        }
    }
}
