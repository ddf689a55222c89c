//! Per-operator time of tract's optimised backbone (issue 21, item 5): `bench/op-profile.sh` runs
//! this beside onnxruntime's own profiler on the same graph and input. The graph as exported
//! (NCHW), tract's optimiser only, with edgewatch linked so its kernels and tiers are in play; the
//! detector's channels-last rewrite is not applied (its own effect is `cargo bench --bench inference`).
//! Usage: op_profile BACKBONE.onnx SIZE [RUNS]
use std::collections::BTreeMap;
use std::time::Instant;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{eval, SimpleState};

fn main() -> TractResult<()> {
    // Links edgewatch, so its registered kernels and tiers are in play as in the detector.
    eprintln!("depthwise kernel: {}", edgewatch::infer::depthwise_kernel());
    let (Some(path), Some(size)) =
        (std::env::args().nth(1), std::env::args().nth(2).and_then(|s| s.parse::<usize>().ok()))
    else {
        eprintln!("usage: op_profile BACKBONE.onnx SIZE [RUNS]");
        std::process::exit(2);
    };
    let model = tract_onnx::onnx()
        .model_for_path(&path)?
        .with_input_fact(0, f32::fact([1, 3, size, size]).into())?
        .into_optimized()?
        .into_runnable()?;
    let mut state = SimpleState::new(&model)?;
    let input: Tensor = tract_ndarray::Array4::<f32>::from_shape_fn((1, 3, size, size), |(_, c, y, x)| {
        ((c * 7 + y * 3 + x) % 17) as f32 / 17.0 - 0.5
    })
    .into();
    for _ in 0..5 {
        state.run(tvec!(input.clone().into()))?;
    }
    let mut per: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let n: usize = std::env::args().nth(3).and_then(|v| v.parse().ok()).unwrap_or(30);
    let t0 = Instant::now();
    for _ in 0..n {
        state.run_plan_with_eval(tvec!(input.clone().into()), |ctx, st, node, inputs| {
            let t = Instant::now();
            let r = eval(ctx, st, node, inputs);
            let name = node.op().name().to_string();
            let e = per.entry(name).or_default();
            e.0 += t.elapsed().as_secs_f64();
            e.1 += 1;
            r
        })?;
    }
    let total = t0.elapsed().as_secs_f64() / n as f64 * 1e3;
    let mut v: Vec<_> = per.into_iter().collect();
    v.sort_by(|a, b| b.1 .0.partial_cmp(&a.1 .0).unwrap());
    println!("tract total {:.3} ms/frame", total);
    for (k, (t, c)) in v {
        println!("  {:40} {:8.3} ms/frame  ({} nodes)", k, t / n as f64 * 1e3, c / n);
    }
    Ok(())
}
