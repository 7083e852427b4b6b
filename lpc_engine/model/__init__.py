"""The network: backbones, the penultimate heads and the classifier
(network.py), and the losses (eq. 1, SupCon, ArcFace, CosFace)."""
