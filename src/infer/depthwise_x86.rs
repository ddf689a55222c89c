//! An x86-64 kernel for tract's channels-last depthwise convolution.
//!
//! tract 0.23 writes this kernel (`Func::DepthwiseC`) for arm64 and wasm only; on x86 the
//! channels-last depthwise convolutions of the backbone fall back to a generic loop that was the
//! largest single symbol of `edgewatch detect` (bench/README.md, session 8). tract-linalg keeps
//! its kernels in an `inventory` registry and picks the best runnable one per machine, so this
//! one is declared into that registry the way tract's own trees declare theirs, and tract's
//! depthwise op calls it with no change to tract.
//!
//! Arithmetic as in tract's generic loop and its x86 `depthwise_w` kernel: the bias, then one
//! multiply and one add per tap, in tap order, no FMA. Every output is bit-identical to the
//! generic loop, so a plan scores the same with or without this kernel.

use tract_linalg::isa::{Arch, Isa, IsaReq};
use tract_linalg::routines::{Func, Routine, RoutineFactory};

/// The name tract reports for this kernel (see [`super::depthwise_kernel`]).
pub const NAME: &str = "edgewatch_x86_64_avx_depthwise_c_f32";

inventory::submit! {
    Routine {
        func: Func::DepthwiseC,
        arch: Some(Arch::X86_64),
        // tract only selects it on machines whose CPUID reports AVX, which makes the call safe.
        isa: IsaReq::ANY.needing(&[Isa::X86_64Avx]),
        boost: 0,
        round_trip: false,
        factory: RoutineFactory::DepthwiseCF32 { name: NAME, run: depthwise_c_f32 },
    }
}

/// `len` output positions of `channels` channels each, as `tract_linalg::routines::DepthwiseCF32`
/// describes: point `i`, channel `c` is `bias[c]` plus every
/// `kernel[tap_indices[t] * k_stride + c] * input[i * in_stride + offsets[t] + c]`.
///
/// Per output position: 32 channels at a time in four 8-lane accumulators kept in registers over
/// all taps (the generic loop stores and reloads the output once per tap), then 8, 4, and single
/// channels. MobileNetV2's channel counts are multiples of 8, so the tails are rare.
///
/// # Safety
/// The pointers must be valid as that contract says, and the CPU must support AVX (tract checks
/// it before choosing this kernel).
#[target_feature(enable = "avx")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn depthwise_c_f32(
    input: *const f32,
    output: *mut f32,
    kernel: *const f32,
    tap_indices: &[usize],
    offsets: &[isize],
    bias: *const f32,
    channels: usize,
    k_stride: usize,
    len: usize,
    in_stride: isize,
    out_stride: isize,
) {
    use std::arch::x86_64::*;
    unsafe {
        for i in 0..len {
            let iptr = input.offset(i as isize * in_stride);
            let optr = output.offset(i as isize * out_stride);
            let mut c = 0usize;
            while c + 32 <= channels {
                let mut acc0 = _mm256_loadu_ps(bias.add(c));
                let mut acc1 = _mm256_loadu_ps(bias.add(c + 8));
                let mut acc2 = _mm256_loadu_ps(bias.add(c + 16));
                let mut acc3 = _mm256_loadu_ps(bias.add(c + 24));
                for (&kix, &off) in tap_indices.iter().zip(offsets) {
                    let kt = kernel.add(kix * k_stride + c);
                    let xt = iptr.offset(off).add(c);
                    acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(_mm256_loadu_ps(kt), _mm256_loadu_ps(xt)));
                    acc1 = _mm256_add_ps(acc1, _mm256_mul_ps(_mm256_loadu_ps(kt.add(8)), _mm256_loadu_ps(xt.add(8))));
                    acc2 = _mm256_add_ps(acc2, _mm256_mul_ps(_mm256_loadu_ps(kt.add(16)), _mm256_loadu_ps(xt.add(16))));
                    acc3 = _mm256_add_ps(acc3, _mm256_mul_ps(_mm256_loadu_ps(kt.add(24)), _mm256_loadu_ps(xt.add(24))));
                }
                _mm256_storeu_ps(optr.add(c), acc0);
                _mm256_storeu_ps(optr.add(c + 8), acc1);
                _mm256_storeu_ps(optr.add(c + 16), acc2);
                _mm256_storeu_ps(optr.add(c + 24), acc3);
                c += 32;
            }
            while c + 8 <= channels {
                let mut acc = _mm256_loadu_ps(bias.add(c));
                for (&kix, &off) in tap_indices.iter().zip(offsets) {
                    let (kt, xt) = (kernel.add(kix * k_stride + c), iptr.offset(off).add(c));
                    acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(kt), _mm256_loadu_ps(xt)));
                }
                _mm256_storeu_ps(optr.add(c), acc);
                c += 8;
            }
            while c + 4 <= channels {
                let mut acc = _mm_loadu_ps(bias.add(c));
                for (&kix, &off) in tap_indices.iter().zip(offsets) {
                    let (kt, xt) = (kernel.add(kix * k_stride + c), iptr.offset(off).add(c));
                    acc = _mm_add_ps(acc, _mm_mul_ps(_mm_loadu_ps(kt), _mm_loadu_ps(xt)));
                }
                _mm_storeu_ps(optr.add(c), acc);
                c += 4;
            }
            while c < channels {
                let mut sum = *bias.add(c);
                for (&kix, &off) in tap_indices.iter().zip(offsets) {
                    sum += *kernel.add(kix * k_stride + c) * *iptr.offset(off).add(c);
                }
                *optr.add(c) = sum;
                c += 1;
            }
        }
    }
}

/// tract 0.23.9's fallback for machines without this kernel (`depth_wise::eval_c_inner`), restated
/// with the kernel's signature: the reference its unit test and `cargo bench --bench inference`
/// hold it to. Not registered. Taps outer, channels inner: the output is stored and reloaded once
/// per tap.
///
/// # Safety
/// As [`depthwise_c_f32`], without the AVX requirement.
#[allow(clippy::too_many_arguments)]
pub unsafe fn generic_depthwise_c_f32(
    input: *const f32,
    output: *mut f32,
    kernel: *const f32,
    tap_indices: &[usize],
    offsets: &[isize],
    bias: *const f32,
    channels: usize,
    k_stride: usize,
    len: usize,
    in_stride: isize,
    out_stride: isize,
) {
    unsafe {
        for i in 0..len as isize {
            let iptr = input.offset(in_stride * i);
            let out = std::slice::from_raw_parts_mut(output.offset(out_stride * i), channels);
            out.copy_from_slice(std::slice::from_raw_parts(bias, channels));
            for (&kix, &off) in tap_indices.iter().zip(offsets) {
                let k = std::slice::from_raw_parts(kernel.add(k_stride * kix), channels);
                let x = std::slice::from_raw_parts(iptr.offset(off), channels);
                for c in 0..channels {
                    out[c] += k[c] * x[c];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_linalg::routines::DepthwiseCF32;

    #[test]
    fn matches_tracts_generic_loop_bit_for_bit() {
        assert!(std::arch::is_x86_feature_detected!("avx"), "these machines have AVX; the kernel needs it");
        let mut seed = 0x9e37_79b9u32;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed as f32 / u32::MAX as f32) * 2.0 - 1.0
        };
        // Every tail (32, 8, 4, 1 channels), a kernel stride wider than the block (a channel
        // block of a multi-threaded run), strides over padding, and 9 or fewer taps (zones at
        // the border have fewer).
        for channels in [1, 3, 4, 7, 8, 12, 16, 31, 32, 33, 45, 96, 100] {
            for (k_stride, ntaps, len, stride_pad) in
                [(channels, 9, 5, 0), (channels + 5, 4, 3, 7), (channels, 1, 1, 0)]
            {
                let in_stride = (channels + stride_pad) as isize;
                let out_stride = (channels + 3) as isize;
                let row = 5 * in_stride;
                // Taps in a 3x3 neighbourhood of a centre a row and a position in.
                let taps: Vec<(usize, isize)> =
                    (0..ntaps).map(|t| (t, (t as isize / 3 - 1) * row + (t as isize % 3 - 1) * in_stride)).collect();
                let base = (row + in_stride) as usize;
                let input: Vec<f32> =
                    (0..base + (len + 2) * in_stride as usize + 2 * row as usize).map(|_| rand()).collect();
                let kernel: Vec<f32> = (0..9 * k_stride).map(|_| rand()).collect();
                let bias: Vec<f32> = (0..channels).map(|_| rand()).collect();
                let out_len = (len - 1) * out_stride as usize + channels;
                let (kix, offs): (Vec<usize>, Vec<isize>) = taps.iter().copied().unzip();
                let (mut want, mut got) = (vec![f32::NAN; out_len], vec![f32::NAN; out_len]);
                for (run, out) in [(generic_depthwise_c_f32 as DepthwiseCF32, &mut want), (depthwise_c_f32, &mut got)] {
                    unsafe {
                        run(
                            input.as_ptr().add(base),
                            out.as_mut_ptr(),
                            kernel.as_ptr(),
                            &kix,
                            &offs,
                            bias.as_ptr(),
                            channels,
                            k_stride,
                            len,
                            in_stride,
                            out_stride,
                        )
                    };
                }
                for i in 0..len {
                    let o = i * out_stride as usize;
                    let (g, w) = (&got[o..o + channels], &want[o..o + channels]);
                    assert!(
                        g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{channels} channels, {ntaps} taps, position {i}: {g:?} != {w:?}"
                    );
                    // The gap between output positions is not written.
                    assert!(got[o + channels..(o + out_stride as usize).min(out_len)].iter().all(|x| x.is_nan()));
                }
            }
        }
    }

    #[test]
    fn tract_runs_it_for_channels_last_depthwise() {
        assert_eq!(crate::infer::depthwise_kernel(), NAME);
        let run = tract_linalg::routines::depthwise_c_f32().expect("a channels-last depthwise kernel on x86");
        assert_eq!(run as *const () as usize, depthwise_c_f32 as *const () as usize);
    }
}
