"""Builds the package with its stubs: `pip install .` runs grpcio-tools' protoc over
../../proto/akte/v1 and packages the result as `akte.v1` beside the helpers in
`akte_client`. The google/* types come from googleapis-common-protos at run time."""

import glob
import os

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
OUT = os.path.join(HERE, "src")


def generate():
    import grpc_tools
    from grpc_tools import protoc

    if not os.path.isdir(os.path.join(PROTO, "akte", "v1")):
        raise SystemExit("proto/akte/v1 not found at %s: build from the akte checkout" % PROTO)
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = sorted(
        os.path.relpath(f, PROTO) for f in glob.glob(os.path.join(PROTO, "akte", "v1", "*.proto"))
    )
    args = ["protoc", "-I" + PROTO, "-I" + wkt, "--python_out=" + OUT, "--pyi_out=" + OUT,
            "--grpc_python_out=" + OUT] + files
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on proto/akte/v1")
    for pkg in ("akte", os.path.join("akte", "v1")):
        open(os.path.join(OUT, pkg, "__init__.py"), "a").close()


# Every step of the build (metadata, wheel) sees the packages, so the stubs are generated
# before setup() looks for them; generating again gives the same files.
generate()

setup(
    package_dir={"": "src"},
    packages=["akte", "akte.v1", "akte_client"],
    package_data={"akte.v1": ["*.pyi"]},
)
