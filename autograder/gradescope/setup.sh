#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image (the kit's own
# test runs it against a temporary folder and a brand-new virtualenv). It
#   - installs bubblewrap, the sandbox engine (the grader falls back to a weaker isolation,
#     and says so in the instructor log, where it cannot);
#   - makes a virtualenv outside /autograder and installs the kit's grading extra,
#     rcnn-kit[grader], with the exact versions of constraints.txt (the environment that
#     built this bundle) when the Python version matches;
#   - creates the unprivileged user that runs student code.
# Torch: the CPU build by default (Gradescope machines have no GPU). Set
# RCNN_KIT_TORCH_INDEX=cuda on a GPU image, =pypi for the default index, or to an index URL.
# Generated into autograder.zip by `rcnn-kit autograder-zip`.
set -euo pipefail

ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
VENV="${RCNN_KIT_VENV:-/opt/rcnn-kit-venv}"
TORCH_INDEX="${RCNN_KIT_TORCH_INDEX:-cpu}"
CPU_INDEX="https://download.pytorch.org/whl/cpu"
SANDBOX_USER=rcnn-sandbox

apt_install() {  # root with apt only (Gradescope's images, Debian/Ubuntu CI)
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
}

if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv --help >/dev/null 2>&1; then
    apt_install python3 python3-venv python3-pip
fi
if ! command -v bwrap >/dev/null 2>&1; then
    apt_install bubblewrap || echo "WARNING: bubblewrap could not be installed: student code will run with the weaker fallback isolation"
fi

python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
PINS=()
bundle_python="$(cat "$SOURCE/bundle_python.txt" 2>/dev/null || echo unknown)"
this_python="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ -f "$SOURCE/constraints.txt" ] && [ "$bundle_python" = "$this_python" ]; then
    PINS=(-c "$SOURCE/constraints.txt")
else
    echo "WARNING: this image has Python $this_python, the bundle was pinned on $bundle_python: installing without the pins"
fi
case "$TORCH_INDEX" in
    cpu) TORCH_FROM=(--index-url "$CPU_INDEX") ;;
    cuda|pypi) TORCH_FROM=() ;;
    *) TORCH_FROM=(--index-url "$TORCH_INDEX") ;;
esac
"$VENV/bin/pip" install --quiet "${PINS[@]}" "${TORCH_FROM[@]}" torch torchvision
"$VENV/bin/pip" install --quiet "${PINS[@]}" -e "$SOURCE[grader]"

# Student code runs as this user; it must be able to run the venv's Python, nothing more.
id -u "$SANDBOX_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$SANDBOX_USER"
chmod -R o+rX "$VENV"
# The bundle's own copy of the hidden checks and the reference stays root-only (this matters
# only where bubblewrap cannot run: bubblewrap shows the child none of /autograder).
chmod o-rwx "$SOURCE"/*/ 2>/dev/null || true
"$VENV/bin/python" -I -c 'from autograder import bubblewrap, isolation; print("sandbox:", isolation.choose_confinement(isolation.sandbox_identity()).describe())'
echo "rcnn-kit autograder installed in $VENV"
