"""Feature extraction: backbones, augmentations, pooling, the extraction engines.

``mlsp.extract(images, store, **options)`` -- the public function (:func:`.run.extract`)
shares its name with this package, so the package itself is callable: whichever of the two
``mlsp.extract`` resolves to, calling it extracts.
"""
import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, images, store, **options):
        """Extract MLSP features of ``images`` into ``store`` (see :func:`.run.extract`)."""
        from .run import extract

        return extract(images, store, **options)


sys.modules[__name__].__class__ = _CallablePackage
