"""Generates the message classes from the repository's proto/pubsub.proto while building.

`protoc` is grpcio-tools' (a build requirement). The generated code names the protobuf runtime
version it was made for; the package then requires a `protobuf` of that major version, no older.
Nothing generated is kept in the source tree: it is written into the build directory only.
"""

import os
import re
import shutil
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "..", "..", "proto", "pubsub.proto")


def generate(out_dir):
    """Writes pubsub_pb2.py, pubsub_pb2.pyi and a copy of pubsub.proto into out_dir."""
    import grpc_tools
    from grpc_tools import protoc

    if not os.path.isfile(PROTO):
        raise SystemExit(f"{PROTO} not found: build from a checkout of apisix-pubsub-rs")
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(PROTO, os.path.join(out_dir, "pubsub.proto"))
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(
        [
            "protoc",
            f"-I{out_dir}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            "pubsub.proto",
        ]
    )
    if rc != 0:
        raise SystemExit(f"protoc failed on {PROTO} (exit {rc})")


def protobuf_requirement():
    """`protobuf>=X.Y.Z,<X+1` for the runtime version the generated code checks for."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp)
        with open(os.path.join(tmp, "pubsub_pb2.py")) as f:
            found = re.search(r"Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", f.read())
    if not found:
        return "protobuf"
    major, minor, patch = found.groups()
    return f"protobuf>={major}.{minor}.{patch},<{int(major) + 1}"


class BuildWithProto(build_py):
    def run(self):
        super().run()
        generate(os.path.join(self.build_lib, "apisix_pubsub"))


setup(
    install_requires=["websockets>=13", protobuf_requirement()],
    cmdclass={"build_py": BuildWithProto},
)
