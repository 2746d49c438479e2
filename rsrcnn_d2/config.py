"""add_rsrcnn_config(cfg): every config key the project adds, with its default."""
from detectron2.config import CfgNode as CN


def add_rsrcnn_config(cfg: CN) -> None:
    """Add RS R-CNN's keys to a detectron2 config (call before merge_from_file)."""
    # --- the meta-architecture (RSRCNN) -----------------------------------------
    cfg.MODEL.RSRCNN = CN()
    # Normalise each input image to zero mean, unit variance inside the model (the
    # paper's per-image normalisation); PIXEL_MEAN/STD are then not applied.
    cfg.MODEL.RSRCNN.PER_IMAGE_ZSCORE = True
    # Probability above which a pasted mask pixel is lesion (paper: 0.5).
    cfg.MODEL.RSRCNN.MASK_THRESHOLD = 0.5

    # --- H-RPN (proposal generator "HRPN") ----------------------------------------
    cfg.MODEL.HRPN = CN()
    # ReLU on the objectness classifier's two logits (background, lesion) before the
    # softmax, as the reference code's H-RPN; False gives a 2-logit softmax RPN.
    cfg.MODEL.HRPN.OBJECTNESS_RELU = True
    # Proposals per image kept after NMS and handed to the ROI heads (paper: 50).
    cfg.MODEL.HRPN.POST_NMS_TOPK_TRAIN = 50
    cfg.MODEL.HRPN.POST_NMS_TOPK_TEST = 50

    # --- expanded mask branch (ROI heads "ExpandedROIHeads") ----------------------
    # Expansion factor k of the boxes the mask branch sees (paper: k = 1.3; 1 = none).
    cfg.MODEL.ROI_MASK_HEAD.EXPANSION_K = 1.3
    # RoIAlign2 output side N; 0 means round(14 * k) as in the paper (k = 1.3 -> 18).
    cfg.MODEL.ROI_MASK_HEAD.EXPANDED_RESOLUTION = 0
    # Number of 3x3 conv layers of the LRS-Net mask head (paper: 2).
    cfg.MODEL.ROI_MASK_HEAD.LRS_NUM_CONV = 2

    # --- dense CRF postprocessor (registry DCRF_REGISTRY) -------------------------
    cfg.MODEL.DCRF = CN()
    # Registered postprocessor name, e.g. "DenseCRFPostprocessor"; "" disables it.
    cfg.MODEL.DCRF.NAME = ""
    # Gaussian pairwise term: spatial std `l1` (pixels) and its compatibility.
    cfg.MODEL.DCRF.GAUSSIAN_SXY = 2.0
    cfg.MODEL.DCRF.GAUSSIAN_COMPAT = 3.0
    # Bilateral pairwise term: spatial std `l2`, intensity std `c1` (0-255 scale).
    cfg.MODEL.DCRF.BILATERAL_SXY = 4.0
    cfg.MODEL.DCRF.BILATERAL_SRGB = 6.0
    cfg.MODEL.DCRF.BILATERAL_COMPAT = 10.0
    # Mean-field inference steps `e1`.
    cfg.MODEL.DCRF.ITERATIONS = 1


def get_rsrcnn_cfg(config_file: str = "", opts=None) -> CN:
    """detectron2's default config + RS R-CNN's keys, merged with a YAML and overrides."""
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_rsrcnn_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    if opts:
        cfg.merge_from_list(list(opts))
    return cfg
