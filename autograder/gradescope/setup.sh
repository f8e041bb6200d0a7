#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image.
# It installs the kit from the bundled source (this folder, /autograder/source) into
# a virtual environment outside /autograder, and creates the unprivileged user that
# runs student code. Generated into autograder.zip by `rcnn-kit autograder-zip`.
set -euo pipefail

ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
VENV="${RCNN_KIT_VENV:-/opt/rcnn-kit-venv}"
SANDBOX_USER=rcnn-sandbox

if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv --help >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi

python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    "$VENV/bin/pip" install --quiet torch torchvision
else
    # CPU-only wheels: a tenth of the download, and the image has no GPU anyway.
    "$VENV/bin/pip" install --quiet torch torchvision --index-url https://download.pytorch.org/whl/cpu
fi
"$VENV/bin/pip" install --quiet -e "$SOURCE"

# Student code runs as this user; it must be able to run the venv's Python, nothing more.
id -u "$SANDBOX_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$SANDBOX_USER"
chmod -R o+rX "$VENV"
# The hidden checks, the reference and the results stay root-only.
chmod o-rwx "$SOURCE"/*/ 2>/dev/null || true
echo "rcnn-kit autograder installed in $VENV"
