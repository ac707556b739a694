"""mlsp: image aesthetics assessment with multi-level spatially pooled features.

Pipeline: images -> extract -> stores -> heads -> evaluation (Hosu et al., CVPR 2019).
"""
__version__ = "0.1.0"
