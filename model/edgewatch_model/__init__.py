"""edgewatch model tooling: synthesise clips, train, export, convert and evaluate
MobileNetV2 + BiLSTM violence models in edgewatch's two-file streaming contract
(backbone.onnx + head.onnx + manifest.toml, see model/README.md)."""

__version__ = "0.1.0"
