"""A trained model for use elsewhere: one ONNX file (:mod:`mlsp.export.onnx`)."""
