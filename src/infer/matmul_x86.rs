//! Which matrix-product kernel tract runs for edgewatch's tiny-k pointwise convolutions on x86.
//!
//! The demo backbone's early 1x1 convolutions are matrix products with k = 8 or 16 (`[3136, 8] x
//! [8, 48]` at 56x56). For those, tract 0.23.9's fitted Intel cost model picks its narrowest tile,
//! `fma_mmm_f32_40x2` (or 32x3, 24x4 when that one is hidden), and that kernel was the largest
//! symbol of `edgewatch detect` on an AVX-512 Xeon: 17 % of the process. With k this small a
//! tile does little arithmetic against a fixed cost (set-up, the fused bias and ReLU6, the stores),
//! and a tile `nr` columns wide reads the packed activations `n / nr` times over. Offering tract's
//! own ladder only tiles at least [`MIN_NR`] wide cut the detector's CPU by about 9 % on that Xeon
//! (bench/README.md, session 10); larger k keeps tract's choice untouched. On an AMD EPYC the narrow
//! tiles cost nothing measurable and the tier neither gains nor loses (2026-12-08): kept for Intel.
//!
//! tract-linalg keeps its dispatch tiers in an `inventory` registry and asks them in order of
//! precedence, so this is one more tier, above tract's, that answers only for those shapes and
//! otherwise defers. Every f32 kernel accumulates over k in the same order with FMA, so the scores
//! do not depend on which one runs (the tract-vs-onnxruntime and channels-last tests hold them).

use std::sync::atomic::{AtomicBool, Ordering};

use tract_linalg::isa::{Arch, IsaSet};
use tract_linalg::mmm::{suitable_named, Query, Suitable};
use tract_linalg::mmm_tiers::{self, MmmTier};
use tract_onnx::prelude::DatumType;

/// The tier's name in tract's ladder.
pub const NAME: &str = "edgewatch-small-k-wide-tiles";
/// Products with a k up to this are the ones this tier speaks for.
pub const MAX_K: usize = 16;
/// The narrowest tile offered for them (measured: 3 and 4 gained less than 6).
pub const MIN_NR: usize = 6;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the tier off (or back on) for graphs optimised from then on, which keep the kernels
/// chosen then: `cargo bench --bench inference` loads the backbone both ways to time the two.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
}

inventory::submit! {
    MmmTier {
        arch: Some(Arch::X86_64),
        // Above every tier tract 0.23.9 declares (its highest is 8).
        precedence: 100,
        name: NAME,
        applies: |_| true,
        preferred: wide_tiles_for_small_k,
    }
}

/// tract's own answer for `query`, asked with only the tiles at least [`MIN_NR`] wide, for an f32
/// product with a known k up to [`MAX_K`] and n at least 2; `None` (tract decides) otherwise, and
/// when no tier below picks one of those tiles.
fn wide_tiles_for_small_k(isa: &IsaSet, dt: DatumType, query: &Query, suitable: &[Suitable]) -> Option<&'static str> {
    if !ENABLED.load(Ordering::SeqCst)
        || dt != DatumType::F32
        || query.n.is_none_or(|n| n < 2)
        || query.k.is_none_or(|k| k > MAX_K)
    {
        return None;
    }
    let wide: Vec<Suitable> = suitable.iter().filter(|(mmm, _, _)| mmm.nr() >= MIN_NR).cloned().collect();
    tract_below(isa, dt, query, &wide)
}

/// What tract's own tiers pick among `suitable`, this one left out. The walk is
/// `mmm_tiers::preferred`'s, restated because that returns an index, and a tier has to answer
/// with a `'static` name.
fn tract_below(isa: &IsaSet, dt: DatumType, query: &Query, suitable: &[Suitable]) -> Option<&'static str> {
    mmm_tiers::for_isa(isa).into_iter().filter(|t| t.name != NAME).find_map(|t| {
        let name = (t.preferred)(isa, dt, query, suitable)?;
        suitable_named(suitable, name).map(|_| name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_linalg::mmm::MmmDispatch;

    /// The switch is process-wide: the tests that read or flip it take turns.
    static SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The kernel this build runs for an f32 product of these dims (name, nr), and the one tract
    /// alone would.
    fn picks(m: usize, k: usize, n: usize) -> ((String, usize), Option<&'static str>) {
        let dispatch = MmmDispatch::native();
        let ours = dispatch.preferred_kernel(DatumType::F32, Some(m), Some(k), Some(n)).unwrap();
        let query = Query::plain(DatumType::F32, Some(m), Some(k), Some(n));
        let tract = tract_below(&tract_linalg::isa::native(), DatumType::F32, &query, &dispatch.suitable(&query));
        ((ours.name().to_string(), ours.nr()), tract)
    }

    #[test]
    fn tiny_k_products_get_wide_tiles_and_the_rest_keep_tracts_choice() {
        let _switch = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            eprintln!("skipped: tract's x86 matrix kernels need AVX2 and FMA");
            return;
        }
        // The demo backbone's tiny-k products: expansions at 56x56 and 28x28, and 14x14.
        for (m, k, n) in [(3136, 8, 48), (784, 8, 48), (196, 16, 96), (3136, 16, 8)] {
            let ((ours, nr), _) = picks(m, k, n);
            assert!(nr >= MIN_NR, "m={m} k={k} n={n}: {ours} is narrower than {MIN_NR}");
        }
        // Larger k, and a matrix-vector product, are tract's call alone.
        for (m, k, n) in [(49, 144, 24), (144, 24, 49), (1280, 112, 16), (256, 1280, 1)] {
            let ((ours, _), tract) = picks(m, k, n);
            assert_eq!(Some(ours.as_str()), tract, "m={m} k={k} n={n}");
        }
    }

    /// The tier changes which kernel runs, not what it computes: the demo backbone's features
    /// on real frames are bit for bit the same with it and without it.
    #[test]
    fn wide_tiles_give_bit_identical_features() {
        use crate::infer::Engine;
        let bundle = crate::model::ModelBundle::from_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("model/demo"),
            "",
        )
        .unwrap();
        let mut avi = crate::source::AviReader::new(std::io::Cursor::new(crate::demo::DEMO_VIDEO)).unwrap();
        let frames: Vec<Vec<u8>> = (0..150).filter_map(|_| avi.next_frame().unwrap()).step_by(30).collect();
        // Plans keep the kernels chosen when they were optimised: one engine of each.
        let _switch = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
        set_enabled(false);
        let tracts = Engine::load(&bundle, 1);
        set_enabled(true);
        let (tracts, wide) = (tracts.unwrap(), Engine::load(&bundle, 1).unwrap());
        let (mut pt, mut pw) = (tracts.preprocessor(), wide.preprocessor());
        for jpeg in &frames {
            let a = tracts.feature(pt.tensor(jpeg).unwrap()).unwrap();
            let b = wide.feature(pw.tensor(jpeg).unwrap()).unwrap();
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "features differ");
        }
    }
}
