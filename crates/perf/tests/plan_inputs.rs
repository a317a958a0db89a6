//! `plan` on extreme numbers in every field: an answer or an input error, never a panic or a
//! hang (the divisor and power-of-two enumerations once overflowed near `u32::MAX`).

use switchyard_core::fleet::Fleet;
use switchyard_perf::MAX_SIZE;
use switchyard_perf::Recompute;
use switchyard_perf::plan::{parse_plan, run_plan};

const FIELDS: [&str; 20] = [
    "layers",
    "hidden",
    "heads",
    "kv_heads",
    "vocab",
    "seq_len",
    "experts",
    "experts_per_token",
    "expert_ffn_hidden",
    "count",
    "size",
    "tp",
    "pp",
    "microbatch",
    "kv_lora_rank",
    "qk_rope_head_dim",
    "v_head_dim",
    "head_dim",
    "sliding_window",
    "window_layers",
];

fn file(workload: &str, field: &str, value: u64) -> String {
    let v = |name: &str, default: u64| if name == field { value } else { default };
    let work = if workload == "training" {
        format!("[training]\nglobal_batch = {}\n", v("size", 64))
    } else {
        format!(
            "[inference]\nprecision = \"fp8\"\nprompt_tokens = {0}\noutput_tokens = {0}\nconcurrency = \"max\"\n",
            v("size", 512)
        )
    };
    let moe = if ["experts", "experts_per_token", "expert_ffn_hidden"].contains(&field) {
        format!(
            "experts = {}\nexperts_per_token = {}\nexpert_ffn_hidden = {}\n",
            v("experts", 64),
            v("experts_per_token", 4),
            v("expert_ffn_hidden", 2048)
        )
    } else {
        String::new()
    };
    let mla = if ["kv_lora_rank", "qk_rope_head_dim", "v_head_dim"].contains(&field) {
        format!(
            "kv_lora_rank = {}\nqk_nope_head_dim = 128\nqk_rope_head_dim = {}\nv_head_dim = {}\n",
            v("kv_lora_rank", 512),
            v("qk_rope_head_dim", 64),
            v("v_head_dim", 128)
        )
    } else {
        String::new()
    };
    let attention = match field {
        "head_dim" => format!("head_dim = {value}\n"),
        "sliding_window" => format!("sliding_window = {value}\n"),
        "window_layers" => format!("sliding_window = 1024\nwindow_layers = {value}\n"),
        _ => String::new(),
    };
    let parallelism = match field {
        "tp" | "pp" => format!("[parallelism]\n{field} = {value}\n"),
        "microbatch" if workload == "training" => format!("[parallelism]\nmicrobatch = {value}\n"),
        _ => String::new(),
    };
    format!(
        "[model]\nname = \"edge\"\nlayers = {}\nhidden = {}\nheads = {}\nkv_heads = {}\nvocab = {}\nseq_len = {}\n{attention}{moe}{mla}{work}[hardware]\naccelerator = \"H100-SXM\"\ncount = {}\n{parallelism}",
        v("layers", 32),
        v("hidden", 4096),
        v("heads", 32),
        v("kv_heads", 8),
        v("vocab", 32_000),
        v("seq_len", 4096),
        v("count", 64),
    )
}

#[test]
fn extreme_values_give_an_answer_or_an_input_error() {
    let fleet = Fleet::default_fleet();
    for workload in ["training", "inference"] {
        for field in FIELDS {
            for value in [
                0,
                1,
                3,
                1 << 20,
                u64::from(MAX_SIZE),
                u64::from(MAX_SIZE) + 1,
                u64::from(u32::MAX),
                u64::from(u32::MAX) + 1,
            ] {
                let text = file(workload, field, value);
                let outcome = parse_plan(&text, &fleet).and_then(|p| run_plan(&p));
                if let Err(e) = outcome {
                    let msg = e.to_string();
                    assert!(!msg.is_empty(), "{workload} {field} = {value}");
                }
            }
        }
    }
}

/// `[training] capacity_factor` is for MoE models, from 1 to 64; the message names the table
/// and the key.
#[test]
fn capacity_factor_is_checked() {
    let fleet = Fleet::default_fleet();
    let plan = |preset: &str, cf: &str| {
        format!(
            "[model]\npreset = \"{preset}\"\n[training]\nglobal_batch = 512\ncapacity_factor = \
             {cf}\n[hardware]\naccelerator = \"H100-SXM\"\ncount = 64\n"
        )
    };
    for (preset, cf, needle) in [
        (
            "llama3-8b",
            "1.25",
            "capacity_factor needs a mixture-of-experts model",
        ),
        (
            "mixtral-8x7b",
            "0",
            "capacity_factor = 0 must be a number from 1 to 64",
        ),
        (
            "mixtral-8x7b",
            "0.5",
            "capacity_factor = 0.5 must be a number from 1 to 64",
        ),
        (
            "mixtral-8x7b",
            "100.0",
            "capacity_factor = 100 must be a number from 1 to 64",
        ),
        (
            "mixtral-8x7b",
            "nan",
            "capacity_factor = NaN must be a number from 1 to 64",
        ),
        (
            "mixtral-8x7b",
            "1e300",
            "capacity_factor = 1e300 must be a number from 1 to 64",
        ),
        (
            "mixtral-8x7b",
            "inf",
            "capacity_factor = inf must be a number from 1 to 64",
        ),
    ] {
        let err = parse_plan(&plan(preset, cf), &fleet)
            .err()
            .unwrap_or_else(|| panic!("{preset} with {cf} must be refused"))
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
    // Accepted, and the report says which factor it priced.
    let input = parse_plan(&plan("mixtral-8x7b", "1.25"), &fleet).expect("valid");
    let Ok(switchyard_perf::plan::PlanReport::Training(report)) = run_plan(&input) else {
        panic!("a training report");
    };
    assert_eq!(report.capacity_factor, Some(1.25));
}

/// A serving table for plans that should be refused before they are costed.
const SERVING: &str = "[inference]\nprecision = \"fp8\"\nprompt_tokens = 1000\noutput_tokens = 1000\nconcurrency = 64";

/// A plan of `preset` on `count` H100 with a workload table and `[parallelism]` keys.
fn h100_plan(preset: &str, work: &str, count: u32, parallelism: &str) -> String {
    format!(
        "[model]\npreset = \"{preset}\"\n{work}\n[hardware]\naccelerator = \"H100-SXM\"\n\
         count = {count}\n[parallelism]\n{parallelism}\n"
    )
}

/// The plan is refused (when read or when costed) with a message containing `needle`.
fn assert_refused(fleet: &Fleet, text: &str, needle: &str) {
    let err = parse_plan(text, fleet)
        .and_then(|p| run_plan(&p))
        .err()
        .unwrap_or_else(|| panic!("must be refused:\n{text}"))
        .to_string();
    assert!(err.contains(needle), "{err}");
}

/// `[parallelism] etp` splits experts: it needs an MoE model, divides `tp`, is for training
/// only, and with `ep` tiles the `tp·dp·cp` ranks of a stage.
#[test]
fn expert_tensor_parallelism_is_checked() {
    let fleet = Fleet::default_fleet();
    let plan =
        |preset: &str, work: &str, parallelism: &str| h100_plan(preset, work, 256, parallelism);
    let training = "[training]\nglobal_batch = 2048";
    let serving = SERVING;
    for (preset, work, parallelism, needle) in [
        (
            "llama3-70b",
            training,
            "tp = 8\netp = 1",
            "[parallelism] etp = 1 needs a mixture-of-experts model",
        ),
        (
            "qwen3-235b-a22b",
            training,
            "tp = 4\netp = 3",
            "[parallelism] etp = 3 does not divide tp = 4",
        ),
        (
            "qwen3-235b-a22b",
            training,
            "tp = 2\npp = 8\ndp = 16\nep = 32\netp = 2\nmicrobatch = 1",
            "[parallelism] ep = 32 does not divide dp·cp = 16 (with etp = tp",
        ),
        (
            "qwen3-235b-a22b",
            training,
            "tp = 4\npp = 8\ndp = 8\nep = 32\netp = 2\nmicrobatch = 1",
            "[parallelism] ep·etp = 32·2 = 64 does not divide tp·dp·cp = 32",
        ),
        (
            "qwen3-235b-a22b",
            training,
            "etp = 0",
            "[parallelism] etp must be at least 1",
        ),
        (
            "qwen3-235b-a22b",
            training,
            "etp = 3",
            "[parallelism] etp = 3 divides no tp the search tries (a power of two dividing heads \
             = 64 and the device count, at most the scale-up domain, 8)",
        ),
        (
            "qwen3-235b-a22b",
            training,
            "tp = 2\nsequence_parallel = false",
            "sequence_parallel = false with tp > 1 is not supported for mixture-of-experts",
        ),
        (
            // etp = 1 fails as well: the error is the folded layout's, without the hint.
            "qwen3-235b-a22b",
            training,
            "tp = 2\npp = 8\ndp = 16\nep = 64\nmicrobatch = 1",
            "[parallelism] ep·etp = 64·1 = 64 does not divide tp·dp·cp = 32",
        ),
        (
            "qwen3-235b-a22b",
            "[training]\nglobal_batch = 2048\nexpert_dispatch = \"broadcast\"",
            "tp = 2",
            "[training] expert_dispatch = \"broadcast\" must be \"all-to-all\" or \"deduplicated\"",
        ),
        (
            "llama3-70b",
            "[training]\nglobal_batch = 2048\nexpert_dispatch = \"all-to-all\"",
            "tp = 8",
            "[training] expert_dispatch needs a mixture-of-experts model",
        ),
        (
            "qwen3-235b-a22b",
            "[training]\nglobal_batch = 2048\nsoftware = \"megatron-2021\"",
            "tp = 4",
            "[parallelism] tp > 1 for a mixture-of-experts model needs sequence parallelism, \
             which the megatron-2021 stack lacks",
        ),
        (
            "llama3-70b",
            "[training]\nglobal_batch = 2048\nsoftware = \"megatron-2021\"",
            "tp = 8\nsequence_parallel = true",
            "[parallelism] sequence_parallel = true, but the megatron-2021 stack has no sequence \
             parallelism (Megatron-LM added it in 2022)",
        ),
        (
            "llama3-70b",
            "[training]\nglobal_batch = 2048\nsoftware = \"megatron-2022\"",
            "tp = 8\ncp = 2",
            "[parallelism] cp > 1, but the megatron-2022 stack has no context parallelism",
        ),
        (
            "qwen3-235b-a22b",
            training,
            "tp = 2\npp = 32\nvirtual_stages = 4\nmicrobatch = 1",
            "[parallelism] pp·virtual_stages = 128 exceeds layers + 2 = 96",
        ),
        (
            "qwen3-235b-a22b",
            serving,
            "tp = 8\netp = 1",
            "[parallelism] etp = 1 applies to training",
        ),
        // A training-only key is named before the degrees are checked against the devices,
        // and before the model's kind.
        (
            "llama3-70b",
            serving,
            "tp = 8\npp = 1\ndp = 2",
            "[parallelism] dp applies to training",
        ),
        (
            "llama3-70b",
            serving,
            "tp = 8\netp = 1",
            "[parallelism] etp = 1 applies to training",
        ),
    ] {
        assert_refused(&fleet, &plan(preset, work, parallelism), needle);
    }
    // Megatron-Core's folded layout for Qwen3-235B on 256 H100 (32-way expert parallelism over
    // 2-way tensor parallelism times 16 replicas) is accepted and reported as given.
    let folded = plan(
        "qwen3-235b-a22b",
        training,
        "tp = 2\npp = 8\ndp = 16\nep = 32\netp = 1\nmicrobatch = 1\nvirtual_stages = 4\n\
         recompute = \"selective\"",
    );
    let input = parse_plan(&folded, &fleet).expect("valid");
    let Ok(switchyard_perf::plan::PlanReport::Training(report)) = run_plan(&input) else {
        panic!("a training report");
    };
    assert_eq!((report.best.layout.ep, report.best.layout.etp), (32, 1));
    assert!(!report.searched, "every degree was given");

    // Megatron's plain all-to-all dispatcher sends each (token, expert) pair over the network:
    // the same layout's dispatch costs more than with DeepEP-style deduplication.
    let plain = folded.replace(
        "global_batch = 2048",
        "global_batch = 2048\nexpert_dispatch = \"all-to-all\"",
    );
    let input = parse_plan(&plain, &fleet).expect("valid");
    let Ok(switchyard_perf::plan::PlanReport::Training(plain)) = run_plan(&input) else {
        panic!("a training report");
    };
    assert!(
        plain.best.breakdown.ep_comm_s > 1.5 * report.best.breakdown.ep_comm_s,
        "{} vs {}",
        plain.best.breakdown.ep_comm_s,
        report.best.breakdown.ep_comm_s
    );

    // 32 stages of 3 chunks for 94 layers: the embedding and the loss take a chunk each.
    let uneven = plan(
        "qwen3-235b-a22b",
        training,
        "tp = 2\npp = 32\ndp = 4\nep = 8\netp = 1\nmicrobatch = 1\nvirtual_stages = 3\n\
         recompute = \"selective\"",
    );
    let input = parse_plan(&uneven, &fleet).expect("valid");
    assert!(run_plan(&input).is_ok());
    // One stage more than the 94 layers, interleaving left to the planner (it keeps v = 1).
    let deep = "[model]\npreset = \"qwen3-235b-a22b\"\n[training]\nglobal_batch = 2048\n\
                [hardware]\naccelerator = \"H100-SXM\"\ncount = 96\n\
                [parallelism]\ntp = 1\npp = 96\nmicrobatch = 1\n";
    let input = parse_plan(deep, &fleet).expect("valid");
    let Ok(switchyard_perf::plan::PlanReport::Training(deep)) = run_plan(&input) else {
        panic!("a training report");
    };
    assert_eq!(
        (deep.best.layout.pp, deep.best.layout.virtual_stages),
        (96, 1)
    );

    // An MoE plan that leaves the expert split to the planner says it searched.
    let open = plan(
        "qwen3-235b-a22b",
        training,
        "tp = 2\npp = 8\nmicrobatch = 1\nrecompute = \"selective\"",
    );
    let input = parse_plan(&open, &fleet).expect("valid");
    let Ok(switchyard_perf::plan::PlanReport::Training(open)) = run_plan(&input) else {
        panic!("a training report");
    };
    assert!(open.searched);
}

/// `[parallelism] recompute_modules` (Megatron-Core's names) refine a selective recompute:
/// unknown names, modules the model lacks, a contradicting mode and serving are refused.
#[test]
fn recompute_modules_are_checked() {
    let fleet = Fleet::default_fleet();
    let training = "[training]\nglobal_batch = 8192";
    let serving = SERVING;
    for (preset, work, parallelism, needle) in [
        (
            "deepseek-v3",
            training,
            "recompute_modules = [\"core_attn\", \"attention\"]",
            "[parallelism] recompute_modules: unknown recompute module \"attention\"; the modules \
             are core_attn, moe_act, layernorm, mla_up_proj, mlp, moe, shared_experts",
        ),
        (
            "deepseek-v3",
            training,
            "recompute_modules = []",
            "[parallelism] recompute_modules lists no module",
        ),
        (
            "deepseek-v3",
            training,
            "recompute = \"full\"\nrecompute_modules = [\"mla_up_proj\"]",
            "[parallelism] recompute_modules refine a selective recompute, but recompute = \"full\"",
        ),
        (
            "llama3-70b",
            training,
            "recompute_modules = [\"mla_up_proj\"]",
            "[parallelism] recompute module mla_up_proj needs multi-head latent attention",
        ),
        (
            "llama3-70b",
            training,
            "recompute_modules = [\"moe_act\"]",
            "[parallelism] recompute module moe_act needs a mixture-of-experts model",
        ),
        (
            "qwen3-235b-a22b",
            training,
            "recompute_modules = [\"shared_experts\"]",
            "[parallelism] recompute module shared_experts needs shared experts",
        ),
        (
            "qwen3-235b-a22b",
            training,
            "recompute_modules = [\"mlp\"]",
            "[parallelism] recompute module mlp needs dense layers (every layer of this model is \
             MoE: the module for those is moe)",
        ),
        (
            "deepseek-v3",
            serving,
            "tp = 8\nrecompute_modules = [\"mla_up_proj\"]",
            "[parallelism] recompute_modules applies to training",
        ),
    ] {
        assert_refused(&fleet, &h100_plan(preset, work, 1024, parallelism), needle);
    }
}

/// Megatron-Bridge's DeepSeek-V3 recipe for 1,024 H100 in BF16 (TP2/PP8/VP4/EP64 with one
/// sequence per micro-batch) recomputes the MLA up projections and the dense MLP: with the
/// classic selective set the layout is over memory, with the recipe's modules it fits, and each
/// added module frees memory and costs time.
#[test]
fn recompute_modules_trade_memory_for_time() {
    let fleet = Fleet::default_fleet();
    let run = |modules: &str| {
        let text = format!(
            "[model]\npreset = \"deepseek-v3\"\n[training]\nglobal_batch = 16384\n\
             [hardware]\naccelerator = \"H100-SXM\"\ncount = 1024\n[parallelism]\ntp = 2\npp = 8\n\
             dp = 64\nep = 64\netp = 1\nmicrobatch = 1\nvirtual_stages = 4\nzero = 1\n\
             recompute = \"selective\"\n{modules}"
        );
        let input = parse_plan(&text, &fleet).expect("valid");
        match run_plan(&input) {
            Ok(switchyard_perf::plan::PlanReport::Training(r)) => *r,
            other => panic!("a training report, got {other:?}"),
        }
    };
    let classic = run("");
    let up = run("recompute_modules = [\"mla_up_proj\"]");
    let recipe = run("recompute_modules = [\"mla_up_proj\", \"mlp\"]");
    let moe = run("recompute_modules = [\"mla_up_proj\", \"mlp\", \"moe\"]");
    assert!(!classic.best.fits, "{:?}", classic.best.memory);
    assert!(recipe.best.fits, "{:?}", recipe.best.memory);
    let gib = |r: &switchyard_perf::plan::TrainingReport| r.best.memory.total_gib;
    let step = |r: &switchyard_perf::plan::TrainingReport| r.best.step_time_s;
    assert!(gib(&up) > gib(&recipe) && gib(&recipe) > gib(&moe));
    assert!(step(&up) < step(&recipe) && step(&recipe) < step(&moe));
    // Recomputing the MoE layer repeats its dispatch: more expert-parallel traffic.
    assert!(moe.best.breakdown.ep_comm_s > recipe.best.breakdown.ep_comm_s);
    // The recomputed experts count as hardware FLOPs, not model FLOPs.
    let recomputed = |r: &switchyard_perf::plan::TrainingReport| r.best.hfu / r.best.mfu;
    assert!(recomputed(&moe) > recomputed(&recipe) && recomputed(&recipe) > recomputed(&up));
    let json = serde_json::to_value(&recipe).expect("serialisable");
    assert_eq!(
        json["recompute_modules"],
        serde_json::json!(["mla_up_proj", "mlp"])
    );
    assert_eq!(json["layout"]["recompute"], "selective");
}

/// Modules refine only the selective mode: when the search also tries no recompute, that layout
/// costs exactly what it costs without modules (the `moe` module once added a third dispatch
/// pass to it), and a recomputed dense MLP under tensor parallelism repeats its collectives.
#[test]
fn recompute_modules_leave_other_modes_alone() {
    let fleet = Fleet::default_fleet();
    let run = |preset: &str, count: u32, parallelism: &str| {
        let text = format!(
            "[model]\npreset = \"{preset}\"\n[training]\nglobal_batch = 1024\n\
             [hardware]\naccelerator = \"H100-SXM\"\ncount = {count}\n[parallelism]\n{parallelism}"
        );
        let input = parse_plan(&text, &fleet).expect("valid");
        match run_plan(&input) {
            Ok(switchyard_perf::plan::PlanReport::Training(r)) => *r,
            other => panic!("a training report, got {other:?}"),
        }
    };
    let layout = "tp = 1\npp = 1\ndp = 16\nep = 16\nmicrobatch = 1\nzero = 1\n";
    let plain = run(
        "qwen3-30b-a3b",
        16,
        &format!("{layout}recompute = \"none\""),
    );
    // Recompute left to the search, which keeps the layout without recompute.
    let searched = run(
        "qwen3-30b-a3b",
        16,
        &format!("{layout}recompute_modules = [\"moe\"]"),
    );
    assert_eq!(searched.best.layout.recompute, Recompute::None);
    assert_eq!(searched.best.step_time_s, plain.best.step_time_s);
    assert_eq!(
        searched.best.breakdown.ep_comm_s,
        plain.best.breakdown.ep_comm_s
    );

    let dense = "tp = 8\npp = 1\ndp = 8\nmicrobatch = 1\nzero = 1\nrecompute = \"selective\"\n";
    let classic = run("llama3-70b", 64, dense);
    let mlp = run(
        "llama3-70b",
        64,
        &format!("{dense}recompute_modules = [\"core_attn\", \"mlp\"]"),
    );
    // Two more of each layer's eight tensor-parallel collectives per micro-batch (the LM
    // head's, not recomputed, keep the ratio just under 10/8).
    let ratio = mlp.best.breakdown.tp_comm_s / classic.best.breakdown.tp_comm_s;
    assert!(ratio > 1.24 && ratio <= 1.25, "{ratio}");
}

/// Megatron-LM as of SC'21 had no sequence parallelism: the search keeps it off, and the
/// pipeline sends 1/tp of each activation per rank over the network plus an NVLink all-gather
/// (the scatter/gather optimisation), which costs more than sequence parallelism's 1/tp alone.
#[test]
fn the_2021_stack_runs_without_sequence_parallelism() {
    let fleet = Fleet::default_fleet();
    let run = |software: &str, extra: &str| {
        let text = format!(
            "[model]\npreset = \"llama3-70b\"\n[training]\nglobal_batch = 1024\n\
             software = \"{software}\"\n[hardware]\naccelerator = \"A100-80GB\"\ncount = 256\n\
             [parallelism]\ntp = 8\npp = 8\ndp = 4\nmicrobatch = 1\nvirtual_stages = 1\n\
             recompute = \"full\"{extra}"
        );
        let input = parse_plan(&text, &fleet).expect("valid");
        match run_plan(&input) {
            Ok(switchyard_perf::plan::PlanReport::Training(r)) => *r,
            other => panic!("a training report, got {other:?}"),
        }
    };
    let sc21 = run("megatron-2021", "");
    let later = run("megatron-2022", "");
    assert!(!sc21.best.layout.sequence_parallel);
    assert!(later.best.layout.sequence_parallel);
    assert!(sc21.best.breakdown.pp_comm_s > later.best.breakdown.pp_comm_s);
    assert!(sc21.best.step_time_s > later.best.step_time_s);
    // Without sequence parallelism both Megatron-LM stacks scatter/gather their pipeline sends;
    // the current stack sends the whole tensor from every rank.
    let later_off = run("megatron-2022", "\nsequence_parallel = false");
    let core_off = run("megatron-core", "\nsequence_parallel = false");
    assert_eq!(
        later_off.best.breakdown.pp_comm_s,
        sc21.best.breakdown.pp_comm_s
    );
    assert!(core_off.best.breakdown.pp_comm_s > 2.0 * sc21.best.breakdown.pp_comm_s);

    // Nor had it ZeRO: an explicit zero is refused, naming the stack, as sequence parallelism is.
    for software in ["megatron-2021", "megatron-2022"] {
        let text = format!(
            "[model]\npreset = \"llama3-70b\"\n[training]\nglobal_batch = 1024\n\
             software = \"{software}\"\n[hardware]\naccelerator = \"A100-80GB\"\ncount = 256\n\
             [parallelism]\nzero = 1\n"
        );
        assert_refused(&fleet, &text, &format!("the {software} stack has no ZeRO"));
    }
}

/// The report says which stack it was costed for, and for an MoE model how its tokens move;
/// `[training] software` and `expert_dispatch` change both.
#[test]
fn the_report_names_its_stack_and_dispatch() {
    let fleet = Fleet::default_fleet();
    let report = |text: &str| {
        let input = parse_plan(text, &fleet).expect("valid");
        let Ok(switchyard_perf::plan::PlanReport::Training(report)) = run_plan(&input) else {
            panic!("a training report");
        };
        serde_json::to_value(&report).expect("serialisable")
    };
    let dense = report(&h100_plan(
        "llama3-8b",
        "[training]\nglobal_batch = 64",
        8,
        "tp = 1\npp = 1",
    ));
    assert_eq!(dense["software"], "megatron-core");
    assert!(dense.get("expert_dispatch").is_none(), "{dense}");
    let moe = |extra: &str| {
        report(&h100_plan(
            "qwen3-30b-a3b",
            &format!("[training]\nglobal_batch = 64\n{extra}"),
            16,
            "tp = 1\npp = 1\nep = 8",
        ))
    };
    let default = moe("");
    assert_eq!(default["expert_dispatch"], "deduplicated");
    let fsdp = moe("software = \"fsdp\"");
    assert_eq!(fsdp["software"], "fsdp");
    assert_eq!(fsdp["expert_dispatch"], "all-to-all");
    let named = moe("expert_dispatch = \"deepep\"\nsoftware = \"fsdp\"");
    assert_eq!(named["expert_dispatch"], "deduplicated");
}

/// `[hardware] per_node` sizes the server; where the NVLink fabric is the server (HGX), a
/// smaller server has a smaller fabric, so tensor parallelism past it is refused. A named
/// cluster already says how many accelerators its nodes hold.
#[test]
fn per_node_sizes_a_server_scale_fabric() {
    let fleet = Fleet::default_fleet();
    let four_gpu_board = |parallelism: &str| {
        h100_plan(
            "llama3-8b",
            "[training]\nglobal_batch = 64",
            16,
            parallelism,
        )
        .replace("count = 16", "count = 16\nper_node = 4")
    };
    assert_refused(
        &fleet,
        &four_gpu_board("tp = 8\npp = 1\nmicrobatch = 1"),
        "scale-up",
    );
    let input =
        parse_plan(&four_gpu_board("tp = 4\npp = 1\nmicrobatch = 1"), &fleet).expect("plan parses");
    assert_eq!(input.hardware.scale_up_domain, 4);
    assert_eq!(input.hardware.nodes(), 4);

    // A rack-scale fabric spans servers: two GB200 per server keep the 72-GPU domain.
    let rack = h100_plan("llama3-8b", "[training]\nglobal_batch = 64", 72, "")
        .replace("H100-SXM", "GB200")
        .replace("count = 72", "count = 72\nper_node = 2");
    let input = parse_plan(&rack, &fleet).expect("plan parses");
    assert_eq!(input.hardware.scale_up_domain, 72);

    let cluster = fleet.clusters[0].clone();
    let text = format!(
        "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\n\
         cluster = \"{}\"\ncount = 8\nper_node = {}\n",
        cluster.name,
        cluster.accelerators_per_node + 1
    );
    assert_refused(&fleet, &text, "leave per_node out");
    let same = text.replace(
        &format!("per_node = {}", cluster.accelerators_per_node + 1),
        &format!("per_node = {}", cluster.accelerators_per_node),
    );
    parse_plan(&same, &fleet).expect("plan parses");
}

/// Every node runs as many ranks: a count over more than one node is a whole number of them
/// (as `per_node` or the server says); less than one node is fine.
#[test]
fn a_count_fills_whole_nodes() {
    let fleet = Fleet::default_fleet();
    let on = |count: u32, per_node: &str| {
        h100_plan("llama3-8b", "[training]\nglobal_batch = 64", count, "").replace(
            &format!("count = {count}"),
            &format!("count = {count}\n{per_node}"),
        )
    };
    assert_refused(
        &fleet,
        &on(12, "per_node = 8"),
        "[hardware] count = 12 is not a whole number of nodes (per_node = 8): use 8 or 16",
    );
    assert_refused(
        &fleet,
        &on(20, ""),
        "count = 20 is not a whole number of nodes (each H100-SXM server holds 8; set per_node if yours differ): use 16 or 24",
    );
    for (count, per_node) in [(12, "per_node = 4"), (4, ""), (4, "per_node = 8"), (24, "")] {
        parse_plan(&on(count, per_node), &fleet)
            .unwrap_or_else(|e| panic!("{count} with {per_node:?}: {e}"));
    }
    let cluster = &fleet.clusters[0];
    let per = cluster.accelerators_per_node;
    let text = format!(
        "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\n\
         cluster = \"{}\"\ncount = {}\n",
        cluster.name,
        per + per / 2
    );
    assert_refused(
        &fleet,
        &text,
        &format!("(cluster \"{}\"'s nodes hold {per})", cluster.name),
    );
}

/// The search proposes only layouts that split the global batch evenly over the data-parallel
/// ranks in whole micro-batches, whatever the batch (a prime one forces dp = 1).
#[test]
fn searched_layouts_split_the_batch_evenly() {
    for global_batch in [100u32, 96, 1000, 37] {
        let text = format!(
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = {global_batch}\n\
             [hardware]\naccelerator = \"H100\"\ncount = 64\n"
        );
        let input = parse_plan(&text, &Fleet::default_fleet()).expect("valid plan");
        let switchyard_perf::plan::PlanReport::Training(report) =
            run_plan(&input).expect("a layout")
        else {
            panic!("a training report");
        };
        for est in std::iter::once(&report.best).chain(&report.alternatives) {
            let l = est.layout;
            assert_eq!(
                global_batch % (l.dp * l.microbatch),
                0,
                "global_batch {global_batch}: {l:?}"
            );
        }
    }
}

/// A plan on a fleet cluster without `count` plans on the whole cluster; an error about that
/// device count says the count was not given and where it came from.
#[test]
fn a_defaulted_count_is_named_in_the_error() {
    let fleet = Fleet::default_fleet();
    let cluster = fleet
        .clusters
        .iter()
        .find(|c| c.accelerators() > 1024)
        .expect("a large cluster in the default fleet");
    let text = format!(
        "[model]\npreset = \"llama3-8b\"\n{SERVING}\n[hardware]\ncluster = \"{}\"\n",
        cluster.name
    );
    assert_refused(
        &fleet,
        &text,
        &format!(
            "[hardware] count is not given, so it is all {} accelerators of cluster \"{}\"",
            cluster.accelerators(),
            cluster.name
        ),
    );
    // An error about something else does not speak of the count.
    let err = parse_plan(&format!("{text}[parallelism]\netp = 2\n"), &fleet)
        .and_then(|p| run_plan(&p))
        .expect_err("etp is for training")
        .to_string();
    assert!(err.contains("etp = 2") && !err.contains("count"), "{err}");
    // Given, the count is the file's own: no such note, and a replica's count plans.
    let err = parse_plan(&format!("{text}count = 3000\n"), &fleet)
        .expect_err("3,000 devices are not whole 16-device nodes")
        .to_string();
    assert!(
        err.contains("count = 3000 is not a whole number of nodes")
            && !err.contains("is not given"),
        "{err}"
    );
    let err = parse_plan(&format!("{text}count = 3008\n"), &fleet)
        .and_then(|p| run_plan(&p))
        .expect_err("3,008 devices do not split")
        .to_string();
    assert!(!err.contains("is not given"), "{err}");
    let input = parse_plan(&format!("{text}count = 8\n"), &fleet).expect("plan parses");
    run_plan(&input).expect("one replica on 8 devices");

    // Training degrees that do not make the cluster's count say so too.
    let training = format!(
        "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 512\nprecision = \"bf16\"\n\
         [hardware]\ncluster = \"{}\"\n",
        cluster.name
    );
    for layout in ["tp = 8\npp = 1\ndp = 2\n", "tp = 8\npp = 3\n"] {
        let err = parse_plan(&format!("{training}[parallelism]\n{layout}"), &fleet)
            .expect_err("not the cluster's count")
            .to_string();
        assert!(
            err.contains("the device count")
                && err.contains(&format!(
                    "[hardware] count is not given, so it is all {} accelerators",
                    cluster.accelerators()
                )),
            "{layout}: {err}"
        );
    }
}

/// A one-cluster fleet of four 8-GPU H100 nodes, with `topology` (TOML lines) under it.
fn h100_fleet(topology: &str) -> Fleet {
    Fleet::from_toml(&h100_fleet_text(topology), "t.toml").expect("a valid fleet")
}

fn h100_fleet_text(topology: &str) -> String {
    format!(
        "name = \"t\"\n[[providers]]\nname = \"p\"\nkind = \"cloud\"\n\
         [[providers.contracts]]\naccelerator = \"H100-SXM\"\non_demand_price = 5.0\n\
         [[clusters]]\nname = \"c\"\nprovider = \"p\"\nregion = \"r\"\naccelerator = \"H100\"\n\
         nodes = 4\ncapacity = \"on_demand\"\nnode_mtbf_hours = 1000.0\nrepair_hours = 24.0\n\
         {topology}"
    )
}

fn estimate_on(fleet: &Fleet, count: u32, parallelism: &str) -> switchyard_perf::TrainingEstimate {
    let text = format!(
        "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\n\
         cluster = \"c\"\ncount = {count}\n[parallelism]\n{parallelism}\n"
    );
    let input = parse_plan(&text, fleet).expect("plan parses");
    match run_plan(&input) {
        Ok(switchyard_perf::plan::PlanReport::Training(report)) => report.best,
        other => panic!("a training report: {other:?}"),
    }
}

fn step_time_on(fleet: &Fleet, parallelism: &str) -> f64 {
    estimate_on(fleet, 32, parallelism).step_time_s
}

/// The cluster's topology sets the links a plan on it pays for: pipeline hops between stages
/// on different nodes cross the network (the pipeline runs at its slowest hop), tensor-parallel
/// traffic rides the scale-up bandwidth the fleet gives, and a server holding more GPUs than
/// the accelerator's fabric links still has the fabric's domain.
#[test]
fn a_clusters_topology_sets_the_links_a_plan_pays_for() {
    let fast = h100_fleet("");
    let slow_network = h100_fleet("[clusters.topology]\ncluster_gb_s = 0.01\n");
    // 16 stages of 2 ranks: four stages per node, every fourth hop between nodes.
    let deep = "tp = 1\ncp = 1\npp = 16\ndp = 2\nzero = 1\nmicrobatch = 1";
    let (t_fast, t_slow) = (step_time_on(&fast, deep), step_time_on(&slow_network, deep));
    assert!(t_slow > 10.0 * t_fast, "{t_fast} s vs {t_slow} s");

    // Stages that all fit in one NVLink domain send over NVLink, whatever the network.
    let one_server = "tp = 1\ncp = 1\npp = 8\ndp = 1\nzero = 1\nmicrobatch = 1";
    assert_eq!(
        estimate_on(&fast, 8, one_server).breakdown.pp_comm_s,
        estimate_on(&slow_network, 8, one_server)
            .breakdown
            .pp_comm_s
    );

    // Tensor-parallel traffic rides the scale-up bandwidth the fleet gives.
    let slow_nvlink = h100_fleet("[clusters.topology]\nscale_up = { nodes = 1, gb_s = 0.01 }\n");
    let wide = "tp = 8\ncp = 1\npp = 1\ndp = 4\nzero = 1\nmicrobatch = 1";
    let (fast_tp, slow_tp) = (
        estimate_on(&fast, 32, wide).breakdown.tp_comm_s,
        estimate_on(&slow_nvlink, 32, wide).breakdown.tp_comm_s,
    );
    assert!(slow_tp > 1000.0 * fast_tp, "{fast_tp} s vs {slow_tp} s");

    // PCIe cards bridged in pairs: eight in a server are four domains, and what crosses between
    // them costs what it costs without a fleet (no fabric joins them).
    let pcie = Fleet::from_toml(
        &h100_fleet_text("")
            .replace("\"H100-SXM\"", "\"H100-PCIe\"")
            .replace("accelerator = \"H100\"", "accelerator = \"H100-PCIe\""),
        "t.toml",
    )
    .expect("a valid fleet");
    assert_eq!(pcie.clusters[0].scale_up_accelerators(), 2);
    let on_cluster = estimate_on(&pcie, 8, one_server);
    let text = "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\n\
                accelerator = \"H100-PCIe\"\ncount = 8\n[parallelism]\n\
                tp = 1\ncp = 1\npp = 8\ndp = 1\nzero = 1\nmicrobatch = 1\n";
    let without_fleet = match run_plan(&parse_plan(text, &pcie).expect("plan parses")) {
        Ok(switchyard_perf::plan::PlanReport::Training(report)) => report.best,
        other => panic!("a training report: {other:?}"),
    };
    assert_eq!(
        on_cluster.breakdown.pp_comm_s,
        without_fleet.breakdown.pp_comm_s
    );

    // 16 H100 in a server are two 8-GPU NVLink domains: tp = 16 would cross the network.
    let big_servers = Fleet::from_toml(
        &h100_fleet_text("").replace("nodes = 4\n", "nodes = 4\naccelerators_per_node = 16\n"),
        "t.toml",
    )
    .expect("a valid fleet");
    assert_eq!(big_servers.clusters[0].scale_up_accelerators(), 8);
    let tp16 = "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n[hardware]\n\
                cluster = \"c\"\ncount = 32\n[parallelism]\ntp = 16\n";
    assert_refused(&big_servers, tp16, "scale-up");
}

/// Degrees that would cut a sequence, the FFN or the layers unevenly are refused by name, in a
/// plan file and in a validation row alike; the search keeps to layouts that split evenly.
#[test]
fn degrees_must_split_sequences_ffn_and_layers_evenly() {
    let fleet = Fleet::default_fleet();
    let train = "[training]\nglobal_batch = 64";
    let with_seq = |seq: u32, parallelism: &str| {
        h100_plan("llama3-8b", train, 64, parallelism).replace(
            "preset = \"llama3-8b\"",
            &format!("preset = \"llama3-8b\"\nseq_len = {seq}"),
        )
    };
    assert_refused(
        &fleet,
        &with_seq(8, "tp = 2\npp = 2\ndp = 1\ncp = 16"),
        "cp = 16 needs [model] seq_len = 8 to be a multiple of 2·cp = 32",
    );
    assert_refused(
        &fleet,
        &with_seq(8191, "cp = 2"),
        "seq_len = 8191 to be a multiple of 2·cp = 4",
    );
    assert_refused(
        &fleet,
        &with_seq(8190, "tp = 4\nsequence_parallel = true"),
        "sequence_parallel with tp = 4 needs each context-parallel rank's 8190 tokens",
    );
    assert_refused(
        &fleet,
        &h100_plan("llama3-8b", train, 64, "tp = 8").replace(
            "preset = \"llama3-8b\"",
            "preset = \"llama3-8b\"\nffn_hidden = 14337",
        ),
        "tp = 8 does not divide [model] ffn_hidden = 14337",
    );
    // The search never picks such a split: 8190 tokens over tp 4 is not even, so no layout
    // with tp = 4 runs sequence parallel, and an odd FFN leaves tp = 1.
    let report = |text: &str| match run_plan(&parse_plan(text, &fleet).expect("valid")) {
        Ok(switchyard_perf::plan::PlanReport::Training(r)) => r,
        other => panic!("a training report: {other:?}"),
    };
    let r = report(&with_seq(8190, ""));
    for est in std::iter::once(&r.best).chain(&r.alternatives) {
        let l = est.layout;
        assert!(!l.sequence_parallel || (8190 / l.cp) % l.tp == 0, "{l:?}");
        assert!(l.cp == 1 || 8190 % (2 * l.cp) == 0, "{l:?}");
    }
    let odd_ffn = h100_plan("llama3-8b", train, 64, "").replace(
        "preset = \"llama3-8b\"",
        "preset = \"llama3-8b\"\nffn_hidden = 14337",
    );
    let r = report(&odd_ffn);
    assert!(
        std::iter::once(&r.best)
            .chain(&r.alternatives)
            .all(|e| e.layout.tp == 1),
        "{:?}",
        r.best.layout
    );
    // Inference: a stage holds at least one layer.
    let serve = "[inference]\nprecision = \"bf16\"\nprompt_tokens = 1000\noutput_tokens = 1000";
    assert_refused(
        &fleet,
        &h100_plan("llama3-8b", serve, 8, "tp = 1\npp = 8").replace(
            "preset = \"llama3-8b\"",
            "preset = \"llama3-8b\"\nlayers = 4",
        ),
        "pp = 8 exceeds [model] layers = 4",
    );
    // A validation row gets the same checks, in the CSV's words.
    let csv = "id,model,accelerator,count,layers,hidden,heads,vocab,seq_len,global_batch,\
               precision,tp,pp,published_tokens_per_s\n\
               A,m,H100-SXM,64,32,4096,32,32000,4096,512,bf16,3,1,600000\n\
               B,m,H100-SXM,64,32,4096,32,32000,4096,512,bf16,1,1,600000\n";
    let report = switchyard_perf::validate::validate_csv(csv).expect("read");
    let [failure] = report.failed_rows.as_slice() else {
        panic!("{:?}", report.failed_rows);
    };
    assert_eq!(
        failure.error,
        "the given degrees (product 3) do not divide the device count 64"
    );
}

/// The layout a report gives can be read back: a dense model's `etp` is reported as its `tp`,
/// and a `[parallelism]` table with every reported key plans the same step.
#[test]
fn a_reported_layout_reads_back_as_the_same_plan() {
    let fleet = Fleet::default_fleet();
    let searched = h100_plan("llama3-8b", "[training]\nglobal_batch = 256", 64, "");
    let input = parse_plan(&searched, &fleet).expect("valid");
    let Ok(switchyard_perf::plan::PlanReport::Training(first)) = run_plan(&input) else {
        panic!("a training report");
    };
    let l = first.best.layout;
    assert_eq!(l.etp, l.tp, "a dense model's etp is reported as its tp");
    let given = h100_plan(
        "llama3-8b",
        "[training]\nglobal_batch = 256",
        64,
        &format!(
            "tp = {}\npp = {}\ndp = {}\ncp = {}\nep = {}\netp = {}\nmicrobatch = {}\n\
             virtual_stages = {}\nrecompute = \"{}\"\nsequence_parallel = {}\nzero = {}",
            l.tp,
            l.pp,
            l.dp,
            l.cp,
            l.ep,
            l.etp,
            l.microbatch,
            l.virtual_stages,
            l.recompute.as_str(),
            l.sequence_parallel,
            l.zero
        ),
    );
    let input = parse_plan(&given, &fleet).expect("the reported layout reads back");
    let Ok(switchyard_perf::plan::PlanReport::Training(again)) = run_plan(&input) else {
        panic!("a training report");
    };
    assert_eq!(again.best.layout, l);
    assert_eq!(again.best.step_time_s, first.best.step_time_s);
}

/// Expert tensor parallelism splits each expert's FFN width evenly: an `etp` that does not
/// divide it is refused, and the search keeps to the ones that do.
#[test]
fn expert_tensor_parallelism_divides_the_expert_width() {
    let fleet = Fleet::default_fleet();
    let text = |parallelism: &str| {
        format!(
            "[model]\nlayers = 16\nhidden = 2048\nheads = 16\nvocab = 32000\nseq_len = 4096\n\
             experts = 8\nexperts_per_token = 2\nexpert_ffn_hidden = 1001\n\
             [training]\nglobal_batch = 256\n[hardware]\naccelerator = \"H100-SXM\"\n\
             count = 16\n[parallelism]\n{parallelism}\n"
        )
    };
    assert_refused(
        &fleet,
        &text("tp = 8\netp = 8"),
        "[parallelism] etp = 8 does not divide [model] expert_ffn_hidden = 1001",
    );
    let input = parse_plan(&text("tp = 8"), &fleet).expect("valid");
    let Ok(switchyard_perf::plan::PlanReport::Training(report)) = run_plan(&input) else {
        panic!("a training report");
    };
    assert_eq!((report.best.layout.tp, report.best.layout.etp), (8, 1));
    for alternative in &report.alternatives {
        assert!(
            1001 % alternative.layout.etp == 0,
            "{:?}",
            alternative.layout
        );
    }
}

/// A searched FP8 training plan slower than the same search in BF16 says so: DeepSeek-V3 on
/// 64 B200 loses its fastest layouts to FP8's extra weight copy, and Llama 3 8B on Gaudi3 gains
/// nothing from it. Where FP8 is faster (Llama 3 8B on H100) there is no such note.
#[test]
fn an_fp8_plan_slower_than_bf16_says_so() {
    let fleet = Fleet::default_fleet();
    let notes = |preset: &str, accelerator: &str| {
        let text = format!(
            "[model]\npreset = \"{preset}\"\n[training]\nglobal_batch = 512\nprecision = \"fp8\"\n\
             [hardware]\naccelerator = \"{accelerator}\"\ncount = 64\n"
        );
        let input = parse_plan(&text, &fleet).expect("valid");
        let Ok(switchyard_perf::plan::PlanReport::Training(report)) = run_plan(&input) else {
            panic!("a training report");
        };
        report.notes
    };
    let slower = notes("deepseek-v3", "B200");
    assert!(
        slower
            .iter()
            .any(|n| n.starts_with("BF16 trains faster on these devices: ")),
        "{slower:?}"
    );
    // A chip whose FP8 peak is no higher than its BF16 one gets the figures too, beside the
    // general note.
    let no_gain = notes("llama3-8b", "Gaudi3");
    assert!(
        no_gain
            .iter()
            .any(|n| n.starts_with("BF16 trains faster on these devices: "))
            && no_gain.iter().any(|n| n.contains("FP8 peak is no higher")),
        "{no_gain:?}"
    );
    let faster = notes("llama3-8b", "H100-SXM");
    assert!(
        !faster.iter().any(|n| n.starts_with("BF16 trains faster")),
        "{faster:?}"
    );
}

/// A partial layout that no split completes names the rule that rules every split out, not
/// only the search's bounds.
#[test]
fn a_partial_layout_no_split_completes_names_the_rule() {
    let fleet = Fleet::default_fleet();
    assert_refused(
        &fleet,
        "[model]\nlayers = 4\nhidden = 4096\nheads = 32\nvocab = 32000\nseq_len = 4096\n\
         [training]\nglobal_batch = 512\n[hardware]\naccelerator = \"H100-SXM\"\ncount = 40\n",
        "[training] global_batch = 512 is not a multiple of any data-parallel degree the split \
         of 40 devices leaves (the smallest is dp = 5",
    );
    let training = "[training]\nglobal_batch = 512";
    assert_refused(
        &fleet,
        &h100_plan("llama3-8b", training, 64, "virtual_stages = 34"),
        "[parallelism] pp·virtual_stages = 68 with the fewest stages interleaving needs (pp = 2) \
         exceeds layers + 2 = 34",
    );
    assert_refused(
        &fleet,
        &h100_plan("mixtral-8x7b", training, 16, "tp = 4\netp = 4\nep = 8"),
        "[parallelism] ep·etp = 8·4 = 32 is more than the 16 devices of a pipeline stage",
    );
    // Without a given etp the folded etp = 1 is tried too: ep = 8 fits a stage of 16.
    assert_refused(
        &fleet,
        &h100_plan(
            "mixtral-8x7b",
            "[training]\nglobal_batch = 4",
            16,
            "tp = 4\nep = 8\nmicrobatch = 5",
        ),
        "[parallelism] microbatch = 5 is larger than [training] global_batch = 4",
    );
    assert_refused(
        &fleet,
        &h100_plan("qwen3-235b-a22b", training, 16, "ep = 32"),
        "[parallelism] ep·etp = 32·1 = 32 is more than the 16 devices of a pipeline stage",
    );
}

/// A `--validate` row is held to what a plan file is: FP8 on a chip without FP8 arithmetic
/// is refused (it was costed at the BF16 speed), and an empty accelerator cell is called
/// empty, not an unknown name "".
#[test]
fn validate_rows_are_refused_as_plan_files_are() {
    let head = "id,model,accelerator,count,layers,hidden,heads,vocab,seq_len,global_batch,\
                precision,published_tokens_per_s\n";
    let csv = format!(
        "{head}A,m,A100-80GB,64,32,4096,32,32000,4096,512,fp8,600000\n\
         B,m,,64,32,4096,32,32000,4096,512,bf16,600000\n\
         G,m,H100-SXM,64,32,4096,32,32000,4096,512,fp8,600000\n"
    );
    let report = switchyard_perf::validate::validate_csv(&csv).expect("read");
    let errors: Vec<&str> = report
        .failed_rows
        .iter()
        .map(|f| f.error.as_str())
        .collect();
    assert_eq!(
        errors,
        [
            "precision = \"fp8\" but A100-80GB has no FP8 arithmetic",
            "accelerator is empty"
        ]
    );
    let inference = "id,model,accelerator,count,layers,hidden,heads,vocab,tp,input_tokens,\
                     output_tokens,precision,published_output_tokens_per_s\n\
                     C,m,A100-80GB,1,32,4096,32,32000,1,128,128,fp8,1000\n\
                     G,m,H100-SXM,1,32,4096,32,32000,1,128,128,fp8,1000\n";
    let report = switchyard_perf::validate::validate_csv(inference).expect("read");
    let [failure] = report.failed_rows.as_slice() else {
        panic!("{:?}", report.failed_rows);
    };
    assert_eq!(
        failure.error,
        "precision = \"fp8\" but A100-80GB has no FP8 arithmetic"
    );
}

/// Inputs the plan once took silently: a concurrency past the largest size (was cut to
/// 2^32 − 1), shared experts on a dense model (ignored).
#[test]
fn silently_dropped_inputs_are_refused() {
    let fleet = Fleet::default_fleet();
    let serve = |concurrency: &str| {
        h100_plan(
            "llama3-8b",
            &format!(
                "[inference]\nprecision = \"bf16\"\nprompt_tokens = 1000\noutput_tokens = 1000\n\
                 concurrency = {concurrency}"
            ),
            8,
            "",
        )
    };
    // A count that is negative, a fraction or past 32 bits says the plan's own range, not the
    // Rust type's.
    for (given, said) in [
        ("count = 99999999999", "99999999999"),
        ("count = -8", "-8"),
        ("count = 8.0", "8.0"),
    ] {
        assert_refused(
            &fleet,
            &h100_plan("llama3-8b", "[training]\nglobal_batch = 64", 64, "")
                .replace("count = 64", given),
            &format!("{said} is not a whole number from 1 to 16777216"),
        );
    }
    assert_refused(
        &fleet,
        &h100_plan("llama3-8b", "[training]\nglobal_batch = -8", 64, ""),
        "-8 is not a whole number from 1 to 16777216",
    );
    assert_refused(
        &fleet,
        &serve("99999999999"),
        "[inference] concurrency = 99999999999 is larger than the supported maximum 16777216",
    );
    assert_refused(
        &fleet,
        &h100_plan("llama3-8b", "[training]\nglobal_batch = 64", 64, "").replace(
            "preset = \"llama3-8b\"",
            "preset = \"llama3-8b\"\nshared_experts = 2",
        ),
        "[model] shared_experts is set but experts is not",
    );
    let csv = "id,model,accelerator,count,layers,hidden,heads,vocab,seq_len,global_batch,\
               precision,published_tokens_per_s,input_tokens\n";
    let e = switchyard_perf::validate::validate_csv(csv).expect_err("an inference column");
    assert!(
        e.to_string()
            .contains("\"input_tokens\" belongs to an inference file"),
        "{e}"
    );
    let e = switchyard_perf::validate::validate_csv("").expect_err("empty");
    assert!(e.to_string().contains("the CSV is empty"), "{e}");
}

/// When no layout fits, the plan reports the one that comes closest (least memory per device:
/// full recompute, sharded states, micro-batch 1), so it says by how much the best try misses,
/// not the fastest layout at forty times the memory.
#[test]
fn nothing_fits_reports_the_layout_closest_to_fitting() {
    let fleet = Fleet::default_fleet();
    let text = "[model]\npreset = \"llama3-70b\"\n[training]\nglobal_batch = 1024\n\
                [hardware]\naccelerator = \"H100-SXM\"\ncount = 8\n";
    let input = parse_plan(text, &fleet).expect("valid");
    let Ok(switchyard_perf::plan::PlanReport::Training(report)) = run_plan(&input) else {
        panic!("a training report");
    };
    let best = &report.best;
    assert!(!best.fits);
    assert_eq!(best.layout.recompute, Recompute::Full, "{:?}", best.layout);
    assert_eq!(best.layout.microbatch, 1, "{:?}", best.layout);
    assert!(
        best.memory_per_device_gib < 200.0,
        "{}",
        best.memory_per_device_gib
    );
    assert!(
        report
            .alternatives
            .iter()
            .all(|a| a.memory_per_device_gib >= best.memory_per_device_gib),
        "{:?}",
        report.alternatives
    );
}

/// A stack without context parallelism is never searched into one: Llama 3 8B at 8,192 tokens
/// on 16 H100s takes cp > 1 nowhere under Megatron-LM 2021/2022, DeepSpeed 2021 or llm-foundry.
#[test]
fn stacks_without_context_parallelism_are_searched_without_it() {
    let fleet = Fleet::default_fleet();
    for software in [
        "megatron-2021",
        "megatron-2022",
        "deepspeed-2021",
        "llm-foundry-2023",
    ] {
        let text = format!(
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 64\n\
             precision = \"bf16\"\nsoftware = \"{software}\"\n\
             [hardware]\naccelerator = \"H100-SXM\"\ncount = 16\n"
        );
        let input = parse_plan(&text, &fleet).expect("valid plan");
        let switchyard_perf::plan::PlanReport::Training(report) =
            run_plan(&input).expect("a layout")
        else {
            panic!("a training report");
        };
        for est in std::iter::once(&report.best).chain(&report.alternatives) {
            assert_eq!(est.layout.cp, 1, "{software}: {:?}", est.layout);
        }
    }
}

/// A preset's field the file leaves out, against one the file changes, is named as the
/// preset's: the file never said `kv_heads = 8`.
#[test]
fn a_presets_kv_heads_against_the_files_heads_is_named_as_the_presets() {
    let fleet = Fleet::default_fleet();
    let text = |extra: &str| {
        format!(
            "[model]\npreset = \"llama3-8b\"\nheads = 12\nhead_dim = 128\n{extra}[training]\n\
             global_batch = 64\nprecision = \"bf16\"\n[hardware]\naccelerator = \"H100\"\n\
             count = 8\n"
        )
    };
    assert_refused(
        &fleet,
        &text(""),
        "[model] kv_heads = 8 (preset \"llama3-8b\"'s: the file does not set it) does not \
         divide heads = 12: set kv_heads too",
    );
    assert_refused(
        &fleet,
        &text("kv_heads = 5\n"),
        "[model] kv_heads = 5 does not divide heads = 12",
    );
    let input = parse_plan(&text("kv_heads = 4\n"), &fleet).expect("valid");
    run_plan(&input).expect("a layout");
}

/// A token budget whose checkpoint writes assume more aggregate storage bandwidth than any
/// published run had (the nodes' own rate, no storage rate stated) says so; one on a cluster
/// that states its storage's rate, or on few nodes, does not.
#[test]
fn a_budget_on_unstated_storage_faster_than_published_says_so() {
    let fleet = Fleet::default_fleet();
    let notes = |hardware: &str| {
        let text = format!(
            "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 4096\ntokens = 1e12\n\
             [hardware]\n{hardware}\n"
        );
        let input = parse_plan(&text, &fleet).expect("valid");
        let Ok(switchyard_perf::plan::PlanReport::Training(report)) = run_plan(&input) else {
            panic!("a training report");
        };
        report.notes
    };
    let storage = |n: &Vec<String>| {
        n.iter()
            .any(|n| n.starts_with("checkpoints are written at "))
    };
    let many = notes("accelerator = \"H100\"\ncount = 8192");
    assert!(
        many.iter().any(|n| n.starts_with(
            "checkpoints are written at 4.1 TB/s (1024 nodes at 4 GB/s each), more than"
        )),
        "{many:?}"
    );
    let few = notes("accelerator = \"H100\"\ncount = 512");
    assert!(!storage(&few), "{few:?}");
    let fleet_text = h100_fleet_text("").replace(
        "nodes = 4\n",
        "nodes = 1024\ncheckpoint_write_gb_s = 2000\n",
    );
    let stated = Fleet::from_toml(&fleet_text, "stated.toml").unwrap_or_else(|e| panic!("{e}"));
    let text = "[model]\npreset = \"llama3-8b\"\n[training]\nglobal_batch = 4096\ntokens = 1e12\n\
                [hardware]\ncluster = \"c\"\n";
    let input = parse_plan(text, &stated).expect("valid");
    let Ok(switchyard_perf::plan::PlanReport::Training(report)) = run_plan(&input) else {
        panic!("a training report");
    };
    assert!(!storage(&report.notes), "{:?}", report.notes);
}

/// Where expert-parallel all-to-all is a large share of the step (DeepSeek-V3's own layout on
/// 2,048 H800), the plan says that none of it is overlapped; a dense model's plan does not.
#[test]
fn a_step_dominated_by_expert_traffic_says_it_is_not_overlapped() {
    let fleet = Fleet::default_fleet();
    let notes = |model: &str, parallelism: &str, count: u32, batch: u32| {
        let text = format!(
            "[model]\n{model}\n[training]\nglobal_batch = {batch}\nprecision = \"fp8\"\n\
             [hardware]\naccelerator = \"H800\"\ncount = {count}\n[parallelism]\n{parallelism}\n"
        );
        let input = parse_plan(&text, &fleet).unwrap_or_else(|e| panic!("{e}"));
        let Ok(switchyard_perf::plan::PlanReport::Training(report)) = run_plan(&input) else {
            panic!("a training report");
        };
        report.notes
    };
    let moe = notes(
        "preset = \"deepseek-v3\"",
        "tp = 1\npp = 16\ndp = 128\nep = 64",
        2048,
        15360,
    );
    assert!(
        moe.iter()
            .any(|n| n.starts_with("expert-parallel all-to-all takes ")
                && n.contains("none of it overlapped")),
        "{moe:?}"
    );
    let dense = notes("preset = \"llama3-8b\"", "tp = 1\npp = 1\ndp = 64", 64, 512);
    assert!(
        !dense.iter().any(|n| n.starts_with("expert-parallel")),
        "{dense:?}"
    );
}

/// An inference row's degrees are sizes, as in a plan file: a zero `tp` is named for what it
/// is, dense or mixture-of-experts (not "no expert split to cost").
#[test]
fn a_zero_degree_in_an_inference_row_is_named() {
    let csv = "id,model,accelerator,count,layers,hidden,heads,vocab,experts,experts_per_token,\
               expert_ffn_hidden,tp,input_tokens,output_tokens,precision,\
               published_output_tokens_per_s\n\
               M,m,H100-SXM,8,32,4096,32,32000,8,2,14336,0,128,128,bf16,1000\n\
               D,m,H100-SXM,8,32,4096,32,32000,,,,0,128,128,bf16,1000\n\
               G,m,H100-SXM,1,32,4096,32,32000,,,,1,128,128,bf16,1000\n";
    let report = switchyard_perf::validate::validate_csv(csv).expect("read");
    let errors: Vec<&str> = report
        .failed_rows
        .iter()
        .map(|f| f.error.as_str())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    for e in errors {
        assert!(e.contains("tp must be at least 1"), "{e}");
    }
}
