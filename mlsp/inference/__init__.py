"""Inference: a trained head (:mod:`.trained_head`), its files on disk and the check that a
store holds the features it reads (:mod:`.model_format`), scoring images and stores, and
the ONNX export (:mod:`.onnx`).  Nothing here imports :mod:`mlsp.training`: a trained head
scores with the extraction featurizer and the store reader only."""
