//! Inference: JPEG → normalised tensor → backbone feature → ring of T features → head score.
//!
//! Streaming is the point: the backbone runs once per sampled frame and the head runs over the
//! ring of the last T features, instead of re-running the backbone over the whole window.
//!
//! tract runs the graphs by default; onnxruntime (cargo feature `onnxruntime`, `model.backend`)
//! is the alternative, behind the same [`Engine`].

pub mod decode;
#[cfg(target_arch = "x86_64")]
pub mod depthwise_x86;
#[cfg(target_arch = "x86_64")]
pub mod matmul_x86;
#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::change_axes::{AxisChange, AxisOp};
use tract_onnx::tract_core::ops::cnn::Conv;
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_core::optim::change_axes::change_axes;
use tract_onnx::tract_hir::infer::Factoid;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

pub use self::decode::{Decode, Pixels, ScaledDecoder};
use crate::config::{Backend, ModelConfig};
use crate::model::{FileSpec, HashingReader, Manifest, ModelBundle, ModelError};

/// An 8-bit RGB image.
#[derive(Clone, Debug)]
pub struct Rgb {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("inference failed: {0}")]
    Tract(String),
    #[error("inference failed (onnxruntime): {0}")]
    Onnxruntime(String),
}

/// Decodes a JPEG to RGB.
pub fn decode_rgb(jpeg: &[u8]) -> Result<Rgb, InferError> {
    let mut data = Vec::new();
    let (width, height) = decode_rgb_into(jpeg, &mut data)?;
    Ok(Rgb { width, height, data })
}

/// [`decode_rgb`] into a buffer the caller keeps across frames, sized to the image here: a fresh
/// buffer per 640x480 frame is 900 KB to allocate and zero every time (2 % of the detector's CPU).
/// Returns the width and height.
pub fn decode_rgb_into(jpeg: &[u8], buf: &mut Vec<u8>) -> Result<(u32, u32), InferError> {
    let opts =
        DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB).set_max_width(8192).set_max_height(8192);
    let mut dec = JpegDecoder::new_with_options(ZCursor::new(jpeg), opts);
    dec.decode_headers().map_err(|e| InferError::Decode(format!("{e:?}")))?;
    let info = dec.info().ok_or_else(|| InferError::Decode("no image info".into()))?;
    let (width, height) = (info.width as u32, info.height as u32);
    let size = width as usize * height as usize * 3;
    if dec.output_buffer_size() != Some(size) {
        return Err(InferError::Decode("decoded size does not match the header".into()));
    }
    buf.resize(size, 0);
    dec.decode_into(buf).map_err(|e| InferError::Decode(format!("{e:?}")))?;
    Ok((width, height))
}

/// How the backbone takes its input: the contract's NCHW `[1,3,H,W]`, or the channels-last
/// `[1,H,W,3]` that tract runs faster (see [`channels_last`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

impl Layout {
    /// For logs: how the backbone runs.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        }
    }

    fn shape(self, h: usize, w: usize) -> [usize; 4] {
        match self {
            Layout::Nchw => [1, 3, h, w],
            Layout::Nhwc => [1, h, w, 3],
        }
    }
}

/// Turns frames into the backbone's input: decode (scaled by default, see [`decode`]), resize
/// (SIMD) and normalise into the engine's layout.
pub struct Preprocessor {
    width: u32,
    height: u32,
    layout: Layout,
    decode: Decode,
    scaled: ScaledDecoder,
    scale: [f32; 3],
    offset: [f32; 3],
    resizer: Resizer,
    resized: Image<'static>,
    /// The decoded frame, reused (see [`decode_rgb_into`]).
    frame: Vec<u8>,
}

impl Preprocessor {
    pub fn new(m: &Manifest, layout: Layout) -> Self {
        let (w, h) = (m.input.width, m.input.height);
        // (x/255 - mean) / std folded into one multiply-add per value.
        let scale = std::array::from_fn(|c| 1.0 / (255.0 * m.input.std[c]));
        let offset = std::array::from_fn(|c| -m.input.mean[c] / m.input.std[c]);
        Preprocessor {
            width: w,
            height: h,
            layout,
            decode: Decode::Scaled,
            scaled: ScaledDecoder::new(),
            scale,
            offset,
            resizer: Resizer::new(),
            resized: Image::new(w, h, PixelType::U8x3),
            frame: Vec::new(),
        }
    }

    /// The same preprocessor decoding frames the given way.
    pub fn with_decode(mut self, decode: Decode) -> Self {
        self.decode = decode;
        self
    }

    /// Decodes, resizes and normalises one frame.
    pub fn tensor(&mut self, jpeg: &[u8]) -> Result<Tensor, InferError> {
        let mut frame = std::mem::take(&mut self.frame);
        let tensor = self.decode_into(jpeg, &mut frame).and_then(|(w, h)| self.resize_normalise(w, h, &frame));
        self.frame = frame;
        tensor
    }

    /// Only the decode step of [`Preprocessor::tensor`], into `buf`: for benchmarks that time the
    /// parts. Returns the decoded width and height.
    pub fn decode_into(&mut self, jpeg: &[u8], buf: &mut Vec<u8>) -> Result<(u32, u32), InferError> {
        match self.decode {
            // At least twice the model's input each way, so the bilinear resize after it still
            // filters over 2+ source pixels per output pixel: at exactly the input's size (1/4 for
            // 112 from 640x480) the demo model's calm scores rose by up to 0.37 (decode.rs).
            Decode::Scaled => self.scaled.decode_into(jpeg, 2 * self.width, 2 * self.height, Pixels::Rgb, buf),
            Decode::Full => decode_rgb_into(jpeg, buf),
        }
    }

    /// Only the resize and normalise step, from RGB pixels `decode_into` produced.
    pub fn tensor_from_pixels(&mut self, width: u32, height: u32, rgb: &[u8]) -> Result<Tensor, InferError> {
        self.resize_normalise(width, height, rgb)
    }

    pub fn tensor_from_rgb(&mut self, rgb: Rgb) -> Result<Tensor, InferError> {
        self.resize_normalise(rgb.width, rgb.height, &rgb.data)
    }

    fn resize_normalise(&mut self, width: u32, height: u32, rgb: &[u8]) -> Result<Tensor, InferError> {
        let src = ImageRef::new(width, height, rgb, PixelType::U8x3).map_err(|e| InferError::Decode(e.to_string()))?;
        let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        self.resizer.resize(&src, &mut self.resized, &opts).map_err(|e| InferError::Decode(e.to_string()))?;
        let (w, h) = (self.width as usize, self.height as usize);
        let plane = w * h;
        let mut out = vec![0f32; 3 * plane];
        let pixels = self.resized.buffer().chunks_exact(3);
        match self.layout {
            Layout::Nchw => {
                for (i, px) in pixels.enumerate() {
                    for c in 0..3 {
                        out[c * plane + i] = px[c] as f32 * self.scale[c] + self.offset[c];
                    }
                }
            }
            // The resized image is already interleaved RGB: one pass, in order.
            Layout::Nhwc => {
                for (o, px) in out.chunks_exact_mut(3).zip(pixels) {
                    for c in 0..3 {
                        o[c] = px[c] as f32 * self.scale[c] + self.offset[c];
                    }
                }
            }
        }
        Tensor::from_shape(&self.layout.shape(h, w), &out).map_err(|e| InferError::Tract(e.to_string()))
    }
}

type Plan = Arc<TypedSimplePlan>;

/// The two loaded, optimised graphs.
#[derive(Clone)]
pub struct Engine {
    pub manifest: Manifest,
    graphs: Graphs,
    why: Why,
}

/// Why this engine runs: a short code for the `model_info` metric's `backend_reason` label, and
/// the detail (which library, or why onnxruntime was passed over) for the start-up log.
#[derive(Clone, Debug)]
pub struct Why {
    /// `configured`, `auto-library-loaded`, `auto-not-built`, `auto-no-library` or
    /// `auto-onnxruntime-failed`.
    pub reason: &'static str,
    pub detail: String,
}

#[derive(Clone)]
enum Graphs {
    Tract {
        backbone: Plan,
        layout: Layout,
        head: Plan,
        threads: usize,
    },
    #[cfg(feature = "onnxruntime")]
    Onnxruntime {
        backbone: onnxruntime::Graph,
        head: onnxruntime::Graph,
    },
}

/// Where one graph's ONNX bytes come from while an engine is built.
pub(crate) enum Onnx<'a> {
    /// In memory: lent, or owned and freed as soon as they are parsed.
    Bytes(Cow<'a, [u8]>),
    /// A verified bundle's file, which the engine reads itself; its digest is checked again
    /// against the manifest (on exactly the bytes parsed, with tract).
    File(PathBuf),
}

/// Builds one graph's plan. Owned bytes are freed as soon as they are parsed (a file is parsed
/// as it is read), and the parsed protobuf as soon as tract has its own graph: with both kept to
/// the end, start-up held the model three times over (file, protobuf, tensors), which set the
/// detector's peak RSS.
fn load_plan(
    src: Onnx<'_>,
    spec: &FileSpec,
    what: &str,
    shape: &[usize],
    out_shape: &[usize],
    prefer: Layout,
) -> Result<(Plan, Layout), ModelError> {
    let contract = |msg: String| ModelError::Contract { what: format!("{what} ({})", spec.file), msg };
    let onnx = tract_onnx::onnx();
    let unloadable = |e: TractError| contract(format!("not a loadable ONNX graph: {e}"));
    let proto = match src {
        Onnx::Bytes(bytes) => onnx.proto_model_for_read(&mut std::io::Cursor::new(&bytes[..])).map_err(unloadable)?,
        Onnx::File(path) => {
            let io = |source| ModelError::Io { path: path.display().to_string(), source };
            let file = std::fs::File::open(&path).map_err(io)?;
            let mut reader = HashingReader::new(std::io::BufReader::new(file));
            let proto = onnx.proto_model_for_read(&mut reader);
            spec.check_digest(reader.finish().map_err(io)?)?;
            proto.map_err(unloadable)?
        }
    };
    if let Some(node) = reverse_only_lstm(&proto) {
        return Err(contract(format!(
            "node `{node}` is a reverse-only LSTM, which tract 0.23 runs forwards (its scores would be wrong); \
             run this model with model.backend = \"onnxruntime\""
        )));
    }
    let mut model =
        onnx.model_for_proto_model(&proto).map_err(|e| contract(format!("not a loadable ONNX graph: {e}")))?;
    drop(proto);
    let inputs = model.input_outlets().map_err(|e| contract(e.to_string()))?.to_vec();
    if inputs.len() != 1 {
        return Err(contract(format!("expected 1 input, found {}", inputs.len())));
    }
    let in_name = &model.node(inputs[0].node).name;
    if in_name != &spec.input {
        return Err(contract(format!("input is named `{in_name}`, the manifest says `{}`", spec.input)));
    }
    // A graph with a fixed input shape must match the manifest; symbolic dims are bound here.
    let declared = model.input_fact(0).map_err(|e| contract(e.to_string()))?.clone();
    if let Some(dims) = declared.shape.concretize() {
        let dims: Vec<Option<i64>> = dims.iter().map(|d| d.to_i64().ok()).collect();
        if dims.len() != shape.len() || dims.iter().zip(shape).any(|(d, s)| d.is_some_and(|d| d != *s as i64)) {
            return Err(contract(format!("input shape is {dims:?}, the manifest implies {shape:?}")));
        }
    }
    model = model.with_input_fact(0, f32::fact(shape).into()).map_err(|e| contract(e.to_string()))?;
    let outputs = model.output_outlets().map_err(|e| contract(e.to_string()))?.to_vec();
    if outputs.len() != 1 {
        return Err(contract(format!("expected 1 output, found {}", outputs.len())));
    }
    let optimise = |e: TractError| contract(format!("cannot optimise for input {shape:?}: {e}"));
    let mut typed = model.into_typed().and_then(|m| m.into_decluttered()).map_err(optimise)?;
    let mut layout = Layout::Nchw;
    if prefer == Layout::Nhwc {
        if let [1, 3, h, w] = *shape {
            // A rewrite tract cannot complete leaves the graph as the contract wrote it.
            if let Ok(Some(m)) = channels_last(&typed, h, w) {
                typed = m;
                layout = Layout::Nhwc;
            }
        }
    }
    // Codegen only: declutter again would move the convolutions back to NCHW.
    typed.optimize().map_err(optimise)?;
    let fact = typed.output_fact(0).map_err(|e| contract(e.to_string()))?;
    let got: Option<Vec<usize>> = fact.shape.as_concrete().map(|s| s.to_vec());
    if got.as_deref() != Some(out_shape) {
        return Err(contract(format!("output shape is {:?}, the contract needs {out_shape:?}", fact.shape)));
    }
    Ok((typed.into_runnable().map_err(|e| contract(e.to_string()))?, layout))
}

/// The same graph with every convolution channels-last (NHWC), or None when it has no
/// convolution or the input would not end up as `[1,H,W,3]`.
///
/// tract 0.23 vectorises a depthwise convolution over the width in NCHW and over the channels in
/// NHWC. MobileNetV2's late maps are 7x7 or smaller, mostly border, where the NCHW path falls
/// back to scalar code; channels-last ran the demo backbone 1.4-1.7x faster (bench/README.md)
/// with bit-identical features. tract's own axis-change propagation does the rewrite, so every
/// op between the convolutions is carried over by the op itself, never by us; the output stays
/// locked as the contract has it.
fn channels_last(model: &TypedModel, h: usize, w: usize) -> TractResult<Option<TypedModel>> {
    let mut m = model.clone();
    let locked = m.output_outlets()?.to_vec();
    let nchw = |n: &TypedNode| {
        n.op_as::<Conv>().and_then(|c| match c.pool_spec.data_format {
            DataFormat::NCHW => Some(AxisOp::Move(1, 3)),
            DataFormat::CHW => Some(AxisOp::Move(0, 2)),
            _ => None,
        })
    };
    let mut refused = std::collections::HashSet::new();
    let mut moved = 0;
    while let Some((id, input, op)) =
        m.nodes().iter().filter(|n| !refused.contains(&n.id)).find_map(|n| nchw(n).map(|op| (n.id, n.inputs[0], op)))
    {
        let change = AxisChange { outlet: input, op };
        match change_axes(&m, &change, &locked, &[], &mut Default::default())? {
            Some((patch, _)) => {
                patch.apply(&mut m)?;
                m = m.into_compact()?;
                // Compaction renumbers nodes: what was refused is looked up again.
                refused.clear();
                moved += 1;
            }
            None => {
                refused.insert(id);
            }
        }
        // Each change moves at least one convolution for good; this bounds a tract surprise.
        anyhow::ensure!(moved <= model.nodes().len(), "channels-last rewrite does not converge");
    }
    let input: Option<Vec<usize>> = m.input_fact(0)?.shape.as_concrete().map(|s| s.to_vec());
    Ok((moved > 0 && input.as_deref() == Some(&[1, h, w, 3][..])).then_some(m))
}

/// The first LSTM with `direction = "reverse"`: tract 0.23.9 computes those as if they ran
/// forwards (its bidirectional LSTM is right); found while writing model/edgewatch_model/hoist.py.
fn reverse_only_lstm(proto: &tract_onnx::pb::ModelProto) -> Option<String> {
    let graph = proto.graph.as_ref()?;
    graph
        .node
        .iter()
        .find(|n| n.op_type == "LSTM" && n.attribute.iter().any(|a| a.name == "direction" && a.s == b"reverse"))
        .map(|n| if n.name.is_empty() { n.output.first().cloned().unwrap_or_default() } else { n.name.clone() })
}

/// The contract's shapes: backbone input and output, head input and output.
fn contract_shapes(m: &Manifest) -> [Vec<usize>; 4] {
    let (h, w) = (m.input.height as usize, m.input.width as usize);
    let (t, f) = (m.temporal.window, m.temporal.feature_dim);
    [vec![1, 3, h, w], vec![1, f], vec![1, t, f], vec![1, 1]]
}

/// The kernel tract runs channels-last depthwise convolutions with on this machine, or
/// `"generic"`: its arm64 one on the Pi, edgewatch's AVX one on x86 ([`depthwise_x86`]).
/// Logged at start-up, since it decides a large share of the per-frame cost.
pub fn depthwise_kernel() -> &'static str {
    use tract_linalg::routines::{best_for, Func};
    best_for(Func::DepthwiseC, DatumType::F32, &tract_linalg::isa::native()).map_or("generic", |r| r.name())
}

fn with_threads<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    if threads > 1 {
        tract_linalg::multithread::multithread_tract_scope(tract_linalg::multithread::Executor::multithread(threads), f)
    } else {
        f()
    }
}

fn run_plan(plan: &Plan, threads: usize, input: Tensor) -> Result<Vec<f32>, InferError> {
    let out = with_threads(threads, || plan.run(tvec!(input.into()))).map_err(|e| InferError::Tract(e.to_string()))?;
    let v = out[0].to_plain_array_view::<f32>().map_err(|e| InferError::Tract(e.to_string()))?;
    Ok(v.iter().copied().collect())
}

impl Engine {
    /// Loads both graphs with tract and checks their shapes against the manifest and the contract.
    pub fn load(bundle: &ModelBundle, threads: usize) -> Result<Engine, ModelError> {
        Engine::load_tract(bundle, threads, Layout::Nhwc)
    }

    /// [`Engine::load`] with the backbone layout to aim for (the benchmark compares both).
    pub fn load_tract(bundle: &ModelBundle, threads: usize, prefer: Layout) -> Result<Engine, ModelError> {
        let (bb, head) = (Onnx::Bytes(Cow::Borrowed(&bundle.backbone)), Onnx::Bytes(Cow::Borrowed(&bundle.head)));
        Engine::load_tract_parts(&bundle.manifest, bb, head, threads, prefer)
    }

    fn load_tract_parts(
        m: &Manifest,
        bb: Onnx<'_>,
        head: Onnx<'_>,
        threads: usize,
        prefer: Layout,
    ) -> Result<Engine, ModelError> {
        let [bb_in, bb_out, head_in, head_out] = contract_shapes(m);
        let (backbone, layout) = load_plan(bb, &m.backbone, "backbone", &bb_in, &bb_out, prefer)?;
        let (head, _) = load_plan(head, &m.head, "head", &head_in, &head_out, Layout::Nchw)?;
        Ok(Engine {
            manifest: m.clone(),
            graphs: Graphs::Tract { backbone, layout, head, threads: threads.max(1) },
            why: Why { reason: "configured", detail: "model.backend = \"tract\"".into() },
        })
    }

    /// Loads both graphs with the backend and threads `model` chooses.
    pub fn load_with(bundle: &ModelBundle, model: &ModelConfig) -> Result<Engine, ModelError> {
        let (bb, head) = (Onnx::Bytes(Cow::Borrowed(&bundle.backbone)), Onnx::Bytes(Cow::Borrowed(&bundle.head)));
        Engine::load_parts(&bundle.manifest, bb, head, model)
    }

    /// [`Engine::load_with`], taking the graphs' bytes out of the bundle (they are empty after),
    /// the detector's way: the engine never holds the model's bytes beside its own copies, which
    /// set the start-up peak. A bundle read from a directory drops them at once and the engine
    /// reads each file itself, checking its digest again; otherwise tract frees them once parsed.
    pub fn load_taking(bundle: &mut ModelBundle, model: &ModelConfig) -> Result<Engine, ModelError> {
        let (bb, head) = (std::mem::take(&mut bundle.backbone), std::mem::take(&mut bundle.head));
        let m = &bundle.manifest;
        let (bb, head) = match &bundle.dir {
            Some(dir) => {
                drop((bb, head));
                (Onnx::File(dir.join(&m.backbone.file)), Onnx::File(dir.join(&m.head.file)))
            }
            None => (Onnx::Bytes(Cow::Owned(bb)), Onnx::Bytes(Cow::Owned(head))),
        };
        Engine::load_parts(m, bb, head, model)
    }

    fn load_parts(m: &Manifest, bb: Onnx<'_>, head: Onnx<'_>, model: &ModelConfig) -> Result<Engine, ModelError> {
        let tract = |bb, head| {
            let prefer = if model.channels_last { Layout::Nhwc } else { Layout::Nchw };
            Engine::load_tract_parts(m, bb, head, model.threads, prefer)
        };
        match model.backend {
            Backend::Tract => tract(bb, head),
            #[cfg(feature = "onnxruntime")]
            Backend::Onnxruntime => Engine::load_onnxruntime(m, &bb, &head, model),
            // Config validation refuses this too; kept for callers that build a ModelConfig by hand.
            #[cfg(not(feature = "onnxruntime"))]
            Backend::Onnxruntime => Err(ModelError::BackendUnavailable(Backend::Onnxruntime.name())),
            #[cfg(not(feature = "onnxruntime"))]
            Backend::Auto => tract(bb, head).map(|e| {
                e.because("auto-not-built", "model.backend = \"auto\": this build has no onnxruntime backend")
            }),
            #[cfg(feature = "onnxruntime")]
            Backend::Auto => match Engine::load_onnxruntime(m, &bb, &head, model) {
                Ok(e) => {
                    let detail = format!("model.backend = \"auto\": {}", e.why.detail);
                    Ok(e.because("auto-library-loaded", detail))
                }
                // No library: the expected case on a host without onnxruntime, hence tract.
                Err(ModelError::Runtime { path, msg }) => tract(bb, head).map(|e| {
                    e.because(
                        "auto-no-library",
                        format!("model.backend = \"auto\": onnxruntime library {path} not loaded ({msg})"),
                    )
                }),
                // The library loaded but refused the graphs: tract gives its own verdict on them.
                Err(err) => tract(bb, head).map(|e| {
                    e.because("auto-onnxruntime-failed", format!("model.backend = \"auto\": onnxruntime failed: {err}"))
                }),
            },
        }
    }

    #[cfg(feature = "onnxruntime")]
    fn load_onnxruntime(m: &Manifest, bb: &Onnx, head: &Onnx, model: &ModelConfig) -> Result<Engine, ModelError> {
        let [bb_in, bb_out, head_in, head_out] = contract_shapes(m);
        let (library, backbone, head) = onnxruntime::load_pair(
            model.onnxruntime_library.as_deref(),
            model.threads.max(1),
            (bb, &m.backbone, &bb_in, &bb_out),
            (head, &m.head, &head_in, &head_out),
        )?;
        Ok(Engine {
            manifest: m.clone(),
            graphs: Graphs::Onnxruntime { backbone, head },
            why: Why { reason: "configured", detail: format!("onnxruntime library {}", library.display()) },
        })
    }

    fn because(mut self, reason: &'static str, detail: impl Into<String>) -> Engine {
        self.why = Why { reason, detail: detail.into() };
        self
    }

    /// Why [`Engine::backend`] runs (see [`Why`]).
    pub fn why(&self) -> &Why {
        &self.why
    }

    /// Which engine runs the graphs.
    pub fn backend(&self) -> Backend {
        match self.graphs {
            Graphs::Tract { .. } => Backend::Tract,
            #[cfg(feature = "onnxruntime")]
            Graphs::Onnxruntime { .. } => Backend::Onnxruntime,
        }
    }

    /// [`depthwise_kernel`] for tract, `"-"` for a backend that brings its own.
    pub fn depthwise_kernel(&self) -> &'static str {
        match self.backend() {
            Backend::Tract => depthwise_kernel(),
            // `backend()` never says auto: it names the engine that runs.
            Backend::Onnxruntime | Backend::Auto => "-",
        }
    }

    /// The layout [`Engine::feature`] takes.
    pub fn input_layout(&self) -> Layout {
        match self.graphs {
            Graphs::Tract { layout, .. } => layout,
            #[cfg(feature = "onnxruntime")]
            Graphs::Onnxruntime { .. } => Layout::Nchw,
        }
    }

    /// A preprocessor making this engine's input.
    pub fn preprocessor(&self) -> Preprocessor {
        Preprocessor::new(&self.manifest, self.input_layout())
    }

    /// One backbone run: an input in [`Engine::input_layout`] → feature of length F.
    pub fn feature(&self, input: Tensor) -> Result<Vec<f32>, InferError> {
        let (h, w) = (self.manifest.input.height as usize, self.manifest.input.width as usize);
        let want = self.input_layout().shape(h, w);
        if input.shape() != want {
            return Err(InferError::Tract(format!(
                "backbone input is {:?}, this engine takes {want:?}",
                input.shape()
            )));
        }
        match &self.graphs {
            Graphs::Tract { backbone, threads, .. } => run_plan(backbone, *threads, input),
            #[cfg(feature = "onnxruntime")]
            Graphs::Onnxruntime { backbone, .. } => {
                let data = input
                    .try_as_plain_ram()
                    .and_then(|v| v.as_slice::<f32>())
                    .map_err(|e| InferError::Onnxruntime(e.to_string()))?;
                Ok(backbone.run(input.shape(), data)?.1)
            }
        }
    }

    /// One head run over T features (oldest first) → score.
    pub fn score<'a>(&self, window: impl ExactSizeIterator<Item = &'a Vec<f32>>) -> Result<f32, InferError> {
        let (t, f) = (self.manifest.temporal.window, self.manifest.temporal.feature_dim);
        if window.len() != t {
            return Err(InferError::Tract(format!("head needs {t} features, got {}", window.len())));
        }
        let mut flat = Vec::with_capacity(t * f);
        for feat in window {
            flat.extend_from_slice(feat);
        }
        let v = match &self.graphs {
            Graphs::Tract { head, threads, .. } => {
                let input = Tensor::from_shape(&[1, t, f], &flat).map_err(|e| InferError::Tract(e.to_string()))?;
                run_plan(head, *threads, input)?
            }
            #[cfg(feature = "onnxruntime")]
            Graphs::Onnxruntime { head, .. } => head.run(&[1, t, f], &flat)?.1,
        };
        v.first().copied().ok_or_else(|| InferError::Tract("empty head output".into()))
    }
}

/// Timings of one streaming step, for metrics and benchmarks.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepTiming {
    pub backbone: Duration,
    pub head: Option<Duration>,
}

/// The streaming scorer: one backbone run per frame, head over the ring once it is full.
pub struct Streamer {
    engine: Engine,
    ring: VecDeque<Vec<f32>>,
    /// How many of the newest ring entries are repeats of the one before them (motion gating).
    repeats: usize,
    /// The head's last score, for when its input cannot have changed.
    last_score: Option<f32>,
}

impl Streamer {
    pub fn new(engine: Engine) -> Self {
        let t = engine.manifest.temporal.window;
        Streamer { engine, ring: VecDeque::with_capacity(t), repeats: 0, last_score: None }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Adds a frame; returns the score once T features are in the ring.
    pub fn push(&mut self, input: Tensor) -> Result<(Option<f32>, StepTiming), InferError> {
        let t0 = Instant::now();
        let feat = self.engine.feature(input)?;
        let backbone = t0.elapsed();
        self.repeats = 0;
        self.step(feat, backbone)
    }

    /// Adds this frame without running the backbone: the newest feature again (the scene did not
    /// change), so the ring keeps one entry per sampled frame, the spacing the head was trained
    /// with. The head runs unless the whole ring is one feature (then its score cannot change).
    /// `None` (nothing to repeat yet) means the caller must [`Streamer::push`] instead.
    pub fn repeat(&mut self) -> Option<Result<(Option<f32>, StepTiming), InferError>> {
        let newest = self.ring.back()?;
        self.repeats += 1;
        let window = self.engine.manifest.temporal.window;
        if self.repeats >= window && self.ring.len() == window {
            return Some(Ok((self.last_score, StepTiming { backbone: Duration::ZERO, head: None })));
        }
        let feat = newest.clone();
        Some(self.step(feat, Duration::ZERO))
    }

    fn step(&mut self, feat: Vec<f32>, backbone: Duration) -> Result<(Option<f32>, StepTiming), InferError> {
        let window = self.engine.manifest.temporal.window;
        if self.ring.len() == window {
            self.ring.pop_front();
        }
        self.ring.push_back(feat);
        if self.ring.len() < window {
            return Ok((None, StepTiming { backbone, head: None }));
        }
        let t1 = Instant::now();
        let score = self.engine.score(self.ring.iter())?;
        self.last_score = Some(score);
        Ok((Some(score), StepTiming { backbone, head: Some(t1.elapsed()) }))
    }

    /// Forgets the history (after a camera outage the old features are stale).
    pub fn reset(&mut self) {
        self.ring.clear();
        self.repeats = 0;
        self.last_score = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn frames(n: usize) -> Vec<Vec<u8>> {
        let mut avi = crate::source::AviReader::new(std::io::Cursor::new(crate::demo::DEMO_VIDEO)).unwrap();
        let mut out = Vec::new();
        while let Some(f) = avi.next_frame().unwrap() {
            out.push(f);
        }
        // Spread over the video: calm, burst and calm frames.
        let step = out.len() / n;
        out.into_iter().step_by(step).take(n).collect()
    }

    /// A decode into the kept buffer gives what a fresh buffer gives, also when the frame before
    /// was another image and this one is cut short: no pixel of the earlier frame survives.
    #[test]
    fn a_reused_decode_buffer_keeps_nothing_of_the_previous_frame() {
        let jpegs = frames(2);
        let mut kept = Vec::new();
        for cut in [1.0, 0.5, 0.2] {
            decode_rgb_into(&jpegs[0], &mut kept).unwrap();
            let truncated = &jpegs[1][..(jpegs[1].len() as f64 * cut) as usize];
            let fresh = decode_rgb(truncated);
            match (decode_rgb_into(truncated, &mut kept), fresh) {
                (Ok(dims), Ok(fresh)) => {
                    assert_eq!(dims, (fresh.width, fresh.height));
                    assert!(
                        kept == fresh.data,
                        "a frame cut to {cut} of its length decodes differently into a kept buffer"
                    );
                }
                (Err(_), Err(_)) => {}
                (a, b) => panic!("cut to {cut}: kept buffer {:?}, fresh {:?}", a.map(|_| ()), b.map(|_| ())),
            }
        }
    }

    /// `model.backend = "auto"` with no loadable onnxruntime library runs tract and says why: no
    /// library (a build with the onnxruntime feature) or no such backend in this build (the
    /// default build, and the aarch64 leg under qemu).
    #[test]
    fn auto_without_a_library_runs_tract_and_says_why() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let bundle = ModelBundle::from_dir(&repo.join("model/test-brightness"), "").unwrap();
        let mut cfg = crate::config::Config::default().model;
        assert_eq!(cfg.backend, Backend::Auto);
        cfg.onnxruntime_library = Some(repo.join("no-such-dir/libonnxruntime.so"));
        let e = Engine::load_with(&bundle, &cfg).unwrap();
        assert_eq!(e.backend(), Backend::Tract);
        let want = if cfg!(feature = "onnxruntime") { "auto-no-library" } else { "auto-not-built" };
        assert_eq!(e.why().reason, want, "{}", e.why().detail);
        cfg.backend = Backend::Tract;
        assert_eq!(Engine::load_with(&bundle, &cfg).unwrap().why().reason, "configured");
    }

    /// A gated frame (motion gating) scores as pushing the same frame again would: the ring gets
    /// the newest feature once more. Once the whole ring is that one feature the head is skipped
    /// and the last score stands; nothing to repeat before the first push.
    #[test]
    fn a_repeat_scores_as_pushing_the_same_frame_again() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let bundle = ModelBundle::from_dir(&repo.join("model/demo"), "").unwrap();
        let engine = Engine::load(&bundle, 1).unwrap();
        let window = engine.manifest.temporal.window;
        let jpegs = frames(window + 4);
        let (mut pushed, mut gated) = (Streamer::new(engine.clone()), Streamer::new(engine.clone()));
        assert!(gated.repeat().is_none(), "nothing to repeat yet");
        let mut pre = engine.preprocessor();
        let last = jpegs.len() - 1;
        for j in &jpegs {
            pushed.push(pre.tensor(j).unwrap()).unwrap();
            gated.push(pre.tensor(j).unwrap()).unwrap();
        }
        for step in 1..=window + 3 {
            let (want, _) = pushed.push(pre.tensor(&jpegs[last]).unwrap()).unwrap();
            let (got, timing) = gated.repeat().unwrap().unwrap();
            assert_eq!(timing.backbone, Duration::ZERO);
            assert_eq!(
                timing.head.is_none(),
                step >= window,
                "step {step}: head skipped only once the ring is one feature"
            );
            let (want, got) = (want.unwrap(), got.unwrap());
            assert!((want - got).abs() < 1e-5, "step {step}: pushed {want}, repeated {got}");
        }
    }

    /// The channels-last rewrite applies to both shipped models and changes no feature: the same
    /// real frames through the backbone as exported (NCHW) and rewritten (NHWC). The aarch64 leg
    /// runs this under qemu, on tract's arm64 depthwise kernel.
    #[test]
    fn channels_last_backbones_give_the_exported_layouts_features() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let jpegs = frames(6);
        for dir in ["model/demo", "model/test-brightness"] {
            let bundle = ModelBundle::from_dir(&repo.join(dir), "").unwrap();
            let nhwc = Engine::load(&bundle, 1).unwrap();
            assert_eq!(nhwc.input_layout(), Layout::Nhwc, "{dir}: the rewrite did not apply");
            let nchw = Engine::load_tract(&bundle, 1, Layout::Nchw).unwrap();
            assert_eq!(nchw.input_layout(), Layout::Nchw);
            // Two threads split the channels-last depthwise work by channel blocks.
            let nhwc2 = Engine::load(&bundle, 2).unwrap();
            let (mut pa, mut pb) = (nchw.preprocessor(), nhwc.preprocessor());
            for jpeg in &jpegs {
                let a = nchw.feature(pa.tensor(jpeg).unwrap()).unwrap();
                assert_eq!(a.len(), bundle.manifest.temporal.feature_dim);
                assert!(a.iter().any(|x| *x != 0.0), "{dir}: an all-zero feature proves nothing");
                for (engine, threads) in [(&nhwc, 1), (&nhwc2, 2)] {
                    let b = engine.feature(pb.tensor(jpeg).unwrap()).unwrap();
                    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                    assert!(diff <= 1e-5, "{dir}: NCHW and NHWC ({threads} threads) features differ by {diff}");
                }
            }
            // The config's switch: off runs the graph as exported.
            let mut cfg = crate::config::Config::default().model;
            assert_eq!(Engine::load_with(&bundle, &cfg).unwrap().input_layout(), Layout::Nhwc);
            cfg.channels_last = false;
            assert_eq!(Engine::load_with(&bundle, &cfg).unwrap().input_layout(), Layout::Nchw);
            // The other layout's tensor is refused, not misread.
            let err = nhwc.feature(pa.tensor(&jpegs[0]).unwrap()).unwrap_err().to_string();
            assert!(err.contains("this engine takes [1, "), "{err}");
        }
    }

    /// The channels-last backbone's depthwise convolutions run on a tract kernel on the Pi:
    /// tract 0.23 has one for arm64 (NEON) but none for x86, where edgewatch declares its own
    /// (`src/infer/depthwise_x86.rs`). A tract update that dropped it would change the Pi's figures.
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn aarch64_has_tracts_channels_last_depthwise_kernel() {
        assert!(tract_linalg::routines::depthwise_c_f32().is_some());
        assert_eq!(depthwise_kernel(), "arm64simd_depthwise_c_f32");
    }
}
