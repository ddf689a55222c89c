# The demo model (model/demo: manifest.toml, backbone.onnx, head.onnx) as a
# package, installed at share/edgewatch/model/demo. Images and test VMs point
# `model.source` at that directory, so nothing is fetched at run time.
{ lib, runCommand }:
let dir = ../../model/demo;
in
runCommand "edgewatch-model-demo"
{
  meta.description = "edgewatch demo model (MobileNetV2 backbone + BiLSTM head, ONNX)";
  passthru.path = "share/edgewatch/model/demo";
}
  ''
    mkdir -p $out/share/edgewatch/model
    cp -r ${lib.cleanSource dir} $out/share/edgewatch/model/demo
  ''
