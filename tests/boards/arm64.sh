#!/bin/sh
# Builds an emulated ARM64 board's Python in DIR (default .arm64-board) for the SSH-device tests:
# Debian bookworm's python3.11 for arm64 (its .debs unpacked, not installed) run by qemu-user as a
# Cortex-A72, with the aarch64 manylinux wheels of numpy and onnxruntime (the versions of .venv) — and
# nothing else. DIR/python is the board's interpreter. qemu-user 7.2 shows programs the host's
# /proc/cpuinfo, on which ONNX Runtime's ARM CPU detection crashes; the wrapper bind-mounts the
# emulated CPU's own cpuinfo over it in a private mount namespace (unshare -m), so this needs root.
# Usage: tests/boards/arm64.sh HOST_PYTHON [DIR]
set -eu
HOST_PY=$1
DIR=$(realpath -m "${2:-.arm64-board}")
if [ -x "$DIR/python" ] && "$DIR/python" -c "import numpy, onnxruntime" >/dev/null 2>&1; then
    echo "arm64 board: $DIR/python"; exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null 2>&1; then
    echo "note: the emulated ARM64 board needs root, apt-get and qemu-user; its tests will skip"; exit 0
fi
export DEBIAN_FRONTEND=noninteractive
rm -rf "$DIR" && mkdir -p "$DIR/debs" "$DIR/root" "$DIR/site"
dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64 && apt-get update -q >/dev/null; }
PKGS="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0
      liblzma5 libgcc-s1 libstdc++6 libuuid1 libtinfo6 libreadline8 libncursesw6 libcrypt1 libsqlite3-0 libdb5.3 libnsl2
      libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1"
(cd "$DIR/debs" && apt-get download -q $(for p in $PKGS; do printf '%s:arm64 ' "$p"; done) >/dev/null 2>&1) || {
    apt-get update -q >/dev/null && (cd "$DIR/debs" && apt-get download -q $(for p in $PKGS; do printf '%s:arm64 ' "$p"; done) >/dev/null); }
for d in "$DIR"/debs/*.deb; do dpkg -x "$d" "$DIR/root"; done
PINS=$("$HOST_PY" -c "import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' for p in ('numpy', 'onnxruntime')))")
"$HOST_PY" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 \
    --platform manylinux_2_17_aarch64 --python-version 3.11 --implementation cp -d "$DIR/wheels" $PINS 2>/dev/null
for w in "$DIR"/wheels/*.whl; do "$HOST_PY" -m zipfile -e "$w" "$DIR/site"; done
rm -rf "$DIR/debs" "$DIR/wheels"
# the emulated CPU's cpuinfo (qemu's cortex-a72: implementer 0x41, part 0xd08), one entry per host core
n=0; : > "$DIR/cpuinfo"
while [ $n -lt "$(nproc)" ]; do
    printf 'processor\t: %s\nBogoMIPS\t: 100.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n' $n >> "$DIR/cpuinfo"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' >> "$DIR/cpuinfo"
    n=$((n + 1))
done
cat > "$DIR/python" <<WRAP
#!/bin/sh
# an emulated ARM64 board's Python (tests/boards/arm64.sh): qemu-aarch64 -cpu cortex-a72, numpy + onnxruntime only
exec unshare -m sh -c "mount --bind $DIR/cpuinfo /proc/cpuinfo && PYTHONPATH=\"\\\${PYTHONPATH:+\\\$PYTHONPATH:}$DIR/site\" exec qemu-aarch64 -cpu cortex-a72 -L $DIR/root $DIR/root/usr/bin/python3.11 \"\\\$@\"" python "\$@"
WRAP
chmod +x "$DIR/python"
"$DIR/python" -c "import platform, numpy, onnxruntime; print('arm64 board:', '$DIR/python |', platform.machine(), '| numpy', numpy.__version__, '| onnxruntime', onnxruntime.__version__)"
