"""The demo generator's training recipe: not part of the PTI runtime.

Modules: :mod:`~pti.train.dcgan_source` (training faces from the DigiFace-1M DCGAN),
:mod:`~pti.train.distill` (stage 1: regress the DCGAN), :mod:`~pti.train.demo` (stage 2:
adversarial StyleGAN2 training, ``pti train-demo``), :mod:`~pti.train.projected_d` and
:mod:`~pti.train.augment` (its discriminator and DiffAugment), :mod:`~pti.train.quality`
(MTCNN face-detection rate and figures, ``pti demo-quality``), :mod:`~pti.train.kid` (KID on
EfficientNet-Lite0 features).

Dependencies beyond the runtime's: the ``train`` extra (``pip install 'pti[train]'``:
gan-face-generate, torchmetrics) and facenet-pytorch, installed with ``--no-deps`` because
its metadata pins an old torch (``tools/bootstrap.sh`` does it). Nothing outside this
package imports it, except the ``pti train-demo`` / ``pti demo-quality`` commands, lazily.
"""
