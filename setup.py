"""Install rsrcnn_d2, the Refined Segmentation R-CNN plugin for Detectron2.

Detectron2 itself is not on the package registry under its own name and is
therefore not listed here: `tools/install_detectron2.py` (run by `make`) keeps
an existing install or adds one. See README.md, "Installing by hand".
"""

from setuptools import find_packages, setup

setup(
    name="rsrcnn_d2",
    version="0.1.0",
    description="Refined Segmentation R-CNN (Liu et al., MICCAI 2019) for PWML "
    "segmentation in preterm-infant T1w MRI, as a Detectron2 plugin",
    # configs/ stays at the repository top (README, tools and users name configs/...);
    # a built package carries it as rsrcnn_d2/configs, where rsrcnn_d2.model_zoo looks first
    packages=[*find_packages(include=["rsrcnn_d2", "rsrcnn_d2.*"]), "rsrcnn_d2.configs"],
    package_dir={"rsrcnn_d2.configs": "configs"},
    package_data={"rsrcnn_d2.configs": ["*.yaml", "*/*.yaml"]},
    python_requires=">=3.9",
    license="Apache-2.0",
    install_requires=[
        "torch>=2.0",
        "torchvision>=0.15",
        # detectron2's own runtime needs (its wheel is installed with --no-deps)
        "fvcore>=0.1.5",
        "iopath>=0.1.7",
        "pycocotools>=2.0.2",
        "omegaconf>=2.1,<2.4",
        "hydra-core>=1.1",
        "yacs>=0.1.8",
        "tabulate",
        "termcolor>=1.1",
        "cloudpickle",
        "tqdm>4.29.0",
        "matplotlib",
        "Pillow>=7.1",
        "setuptools<81",  # detectron2.model_zoo imports pkg_resources
        "tensorboard",  # DefaultTrainer's writers import it
        # the method's own needs
        "numpy",
        "scipy",
        "nibabel>=5",
        "pydensecrf2>=1.1",  # provides the `pydensecrf` module on Python >= 3.11
        "bayesian-optimization>=1.4",
        "nilearn>=0.14",  # ships the MNI152 2009a template the synthetic cohort is built on
    ],
    # ruff pinned: its formatting changes between releases, and `make test` checks it
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3", "filelock>=3", "hypothesis>=6", "ruff==0.16.9"]
    },
    # one command per module of rsrcnn_d2/cli (tools/*.py run the same programs)
    entry_points={
        "console_scripts": [
            "rsrcnn-prepare=rsrcnn_d2.cli.prepare:main",
            "rsrcnn-make-cohort=rsrcnn_d2.cli.make_cohort:main",
            "rsrcnn-train=rsrcnn_d2.cli.train_net:cli",
            "rsrcnn-evaluate=rsrcnn_d2.cli.evaluate:main",
            "rsrcnn-predict=rsrcnn_d2.cli.predict:main",
            "rsrcnn-ensemble=rsrcnn_d2.cli.ensemble:main",
            "rsrcnn-tune=rsrcnn_d2.cli.tune_operating_point:main",
            "rsrcnn-tune-classical=rsrcnn_d2.cli.tune_classical:main",
            "rsrcnn-eval-classical=rsrcnn_d2.cli.eval_classical:main",
            "rsrcnn-plot=rsrcnn_d2.cli.plot_results:main",
            "rsrcnn-cv=rsrcnn_d2.cli.run_cv:main",
            "rsrcnn-find-best=rsrcnn_d2.cli.find_best:main",
            "rsrcnn-ablation=rsrcnn_d2.cli.run_ablation:main",
            "rsrcnn-loso=rsrcnn_d2.cli.run_loso:main",
            "rsrcnn-demo=rsrcnn_d2.cli.demo:main",
            "rsrcnn-pretrain=rsrcnn_d2.cli.pretrain:main",
        ]
    },
)
