"""Files shipped with mlsp.

``mobilenet_v2_alpha0.35_imagenet_no_top.weights.h5``: ImageNet-pretrained
MobileNetV2 (alpha 0.35, no top, Keras 3 weights format, 410,208 parameters;
from the keras-applications release, Apache 2.0).  2 MB: small enough to ship,
so the built-in demo and the tests run offline on real pretrained features.
"""
from pathlib import Path

BUNDLED_WEIGHTS = {
    ("mobilenet_v2", 0.35): Path(__file__).with_name("mobilenet_v2_alpha0.35_imagenet_no_top.weights.h5"),
}
