"""Backbones, pooling layers (thesis Figure 2.6), whitening, descriptor extraction and the
metric-learning embedding network of chapters 5-6."""

from irbook.models.aggregation import (
    AGGREGATIONS,
    DiagonalGMM,
    LocalAggregation,
    bow,
    embed_maps,
    fisher_vector,
    fit_codebook,
    fit_diagonal_gmm,
    kmeans_codebook,
    local_descriptors,
    vlad,
)
from irbook.models.backbones import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PretrainedWeightsMissingError,
    SmallCNN,
    make_backbone,
    pretrained_weights_path,
    require_pretrained_weights,
)
from irbook.models.embedding import EMBEDDING_POOLINGS, EmbeddingNet, GrowingLinear
from irbook.models.extract import (
    extract_descriptors,
    extract_feature_maps,
    extract_pooled,
    pool_maps,
    sample_local_descriptors,
)
from irbook.models.functional import crow, gem, l2n, mac, rmac, rmac_regions, spoc
from irbook.models.hash_head import HashHead, hash_relaxation
from irbook.models.net import RetrievalNet
from irbook.models.netvlad import NetVLAD, netvlad
from irbook.models.pooling import L2N, MAC, POOLINGS, RMAC, CroW, GeM, SPoC, make_pooling
from irbook.models.schemes import (
    cam_crow,
    class_activation_maps,
    fc_features,
    fuse_layers,
    multiscale_descriptor,
    patch_boxes,
    patch_descriptors,
)
from irbook.models.whitening import Whitening, fit_learned_whitening, fit_pca_whitening

__all__ = [
    "BACKBONES",
    "EMBEDDING_POOLINGS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "L2N",
    "MAC",
    "POOLINGS",
    "RMAC",
    "CroW",
    "EmbeddingNet",
    "GeM",
    "GrowingLinear",
    "PretrainedWeightsMissingError",
    "RetrievalNet",
    "SPoC",
    "SmallCNN",
    "Whitening",
    "crow",
    "extract_descriptors",
    "extract_feature_maps",
    "extract_pooled",
    "fit_learned_whitening",
    "fit_pca_whitening",
    "gem",
    "l2n",
    "mac",
    "make_backbone",
    "make_pooling",
    "pool_maps",
    "sample_local_descriptors",
    "pretrained_weights_path",
    "require_pretrained_weights",
    "rmac",
    "rmac_regions",
    "spoc",
    "AGGREGATIONS",
    "DiagonalGMM",
    "LocalAggregation",
    "bow",
    "embed_maps",
    "fisher_vector",
    "fit_codebook",
    "fit_diagonal_gmm",
    "kmeans_codebook",
    "local_descriptors",
    "vlad",
    "HashHead",
    "hash_relaxation",
    "NetVLAD",
    "netvlad",
    "cam_crow",
    "class_activation_maps",
    "fc_features",
    "fuse_layers",
    "multiscale_descriptor",
    "patch_boxes",
    "patch_descriptors",
]
