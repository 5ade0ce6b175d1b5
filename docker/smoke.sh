#!/usr/bin/env bash
# make image-smoke: build the CPU image, check it, then run a rendered 2-pod × 1-device resnext_tiny job as Docker
# containers that rendezvous over loopback, and evaluate the result in a container. Non-zero exit if anything fails.
#
# Environment: IMAGE (default resnext-jobs-cpu:smoke), BASE_IMAGE (default python:3.11-slim, pulled by the build
# unless the engine has it), DOCKER (the client: docker, podman, or a path to one; default docker), SMOKE_DIR (work
# directory; default a new one under /var/tmp, removed after a pass), SMOKE_TIMEOUT (seconds for the training job,
# default 900).
# The build is `make image`'s (docker/build.sh), with or without buildx. Needs a running Docker-compatible engine
# (Docker, or Podman through its docker-compatible CLI) and python3 on the host (docker/run_pods.py uses only the
# standard library).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-resnext-jobs-cpu:smoke}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
DOCKER=${DOCKER:-docker}
SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-900}
JOB=smoke
start=$(date +%s)
stamp() { echo "== [$(($(date +%s) - start))s] $*"; }
fail() { echo "image-smoke: FAILED: $*" >&2; exit 1; }

# A base imported from a root filesystem tarball (an offline machine's stand-in for python:3.11-slim) can have "/"
# at mode 0700, so the image's uid-1000 user could not even exec python. Re-import such a base once: `export`
# omits the root entry, so "/" becomes 0755. A base pulled from a registry passes the first check as it is.
usable_base() {
  local base=$1 fixed="$1-rootfix" cid env_changes=()
  if ! "$DOCKER" image inspect "$base" >/dev/null 2>&1 \
    || "$DOCKER" run --rm --network host --user 1000 "$base" /usr/bin/true >/dev/null 2>&1; then
    echo "$base"; return  # not here yet (the build pulls it), or usable as it is
  fi
  if ! "$DOCKER" image inspect "$fixed" >/dev/null 2>&1; then
    while read -r kv; do [ -n "$kv" ] && env_changes+=(-c "ENV $kv"); done \
      < <("$DOCKER" image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$base")
    cid=$("$DOCKER" create "$base")
    "$DOCKER" export "$cid" | "$DOCKER" import "${env_changes[@]}" -c 'CMD ["python3"]' - "$fixed" >/dev/null
    "$DOCKER" rm "$cid" >/dev/null
  fi
  echo "$fixed"
}

"$DOCKER" info >/dev/null 2>&1 \
  || fail "no container engine answers to '$DOCKER info': start Docker (or Podman's docker-compatible service), or point DOCKER= at a client that reaches one"
command -v python3 >/dev/null || fail "python3 is needed on the host for docker/run_pods.py"
base=$(usable_base "$BASE_IMAGE")

stamp "build $IMAGE on $base"
PLATFORM=cpu IMAGE="$IMAGE" BASE_IMAGE="$base" DOCKER="$DOCKER" bash docker/build.sh
# The image this tag replaced is dangling now; drop it (vfs keeps a full copy of every layer).
"$DOCKER" image prune -f --filter label=org.opencontainers.image.title=resnext-jobs >/dev/null

# Every container here runs as the rendered pods do: read-only root filesystem, writable /tmp (HOME, TMPDIR) and
# /workspace (the working directory) as anonymous volumes, like the pods' emptyDirs (docker/run_pods.py).
RO=(--read-only --volume /tmp --volume /workspace --env HOME=/tmp --env TMPDIR=/tmp --workdir /workspace)

stamp "image checks"
# One container for the cheap checks: with the vfs storage driver every container start copies the whole image.
checks=$("$DOCKER" run --rm --network host "${RO[@]}" "$IMAGE" python -c "import os, mindspore, trainer, jobctl
plugins = os.listdir(os.path.join(os.path.dirname(mindspore.__file__), 'lib', 'plugin'))
print(os.getuid(), os.environ.get('ONEDNN_MAX_CPU_ISA'), mindspore.__version__, ','.join(sorted(plugins)))") \
  || fail "the image cannot import mindspore, trainer and jobctl"
read -r uid isa ms_version plugins <<<"$(tail -n 1 <<<"$checks")"
echo "uid $uid, ONEDNN_MAX_CPU_ISA=$isa, mindspore $ms_version, plugins: $plugins"
[ "$uid" = 1000 ] || fail "the image runs as uid $uid, want 1000"
[ "$isa" = AVX2 ] || fail "ONEDNN_MAX_CPU_ISA is $isa in the CPU image, want AVX2"
[ "$plugins" = cpu,libmindspore_ops_cpu.so ] || fail "the CPU image keeps other backends: $plugins"
set +e
launch_out=$("$DOCKER" run --rm --network host "${RO[@]}" "$IMAGE" 2>&1)
launch_code=$?
set -e
[ "$launch_code" = 2 ] || fail "the default command without pod env exited $launch_code, want 2: $launch_out"
echo "default command without pod env: exit 2: ${launch_out:0:300}"

work=${SMOKE_DIR:-$(mktemp -d /var/tmp/image-smoke.XXXXXX)}
rm -rf "$work/shared/jobs/$JOB"  # a reused SMOKE_DIR must not resume an earlier run's checkpoints
mkdir -p "$work/shared" "$work/data"
# The pods run as uid 1000; in a cluster the pod's fsGroup makes the volumes writable, here ownership does.
chown 1000:1000 "$work/shared" "$work/data" 2>/dev/null || chmod 0777 "$work/shared" "$work/data"

stamp "synthetic dataset (in a container)"
"$DOCKER" run --rm --network host "${RO[@]}" --mount "type=bind,source=$work/data,target=/out" "$IMAGE" \
  python -m trainer.data synth --out /out/synth --classes 4 --per_class 32 --val_per_class 8 --size 32 --quiet

stamp "render the job (jobctl in the image)"
# 128 images / (2 ranks × 8) = 8 steps per epoch, 4 epochs: 32 steps at 32 px.
"$DOCKER" run --rm --network host "${RO[@]}" "$IMAGE" jobctl render --platform cpu --devices 2 --devices-per-node 1 \
  --name "$JOB" --image "$IMAGE" --set arch=resnext_tiny --set image_size=32 --set per_batch_size=8 \
  --set max_epoch=4 --set T_max=4 --set lr=0.1 --set warmup_epochs=0 --set num_parallel_workers=1 \
  --set log_interval=4 -o json >"$work/rendered.json"

stamp "run the job's 2 pods as containers"
t0=$(date +%s)
python3 docker/run_pods.py "$work/rendered.json" --docker "$DOCKER" --volume "/shared=$work/shared" \
  --volume "/data=$work/data/synth" --timeout "$SMOKE_TIMEOUT" \
  || fail "the job failed; job directory: $work/shared/jobs/$JOB"
echo "job: $(($(date +%s) - t0)) s"
status="$work/shared/jobs/$JOB/ckpt/status.json"
[ -f "$status" ] || fail "no $status"
python3 - "$status" <<'EOF' || fail "$status does not say completed"
import json, sys
s = json.load(open(sys.argv[1]))
print("status:", s["state"], "step", s["step"], "loss", s["loss"], "ranks", s["rank_size"])
sys.exit(s["state"] != "completed")
EOF

stamp "evaluate (in a container, mounted as the eval pod: the job's folder read-only but eval/)"
jobdir="$work/shared/jobs/$JOB"
mkdir -p "$jobdir/eval" && chown 1000:1000 "$jobdir/eval" 2>/dev/null || chmod 0777 "$jobdir/eval"
eval_out=$("$DOCKER" run --rm --network host "${RO[@]}" \
  --mount "type=bind,source=$jobdir,target=/shared/jobs/$JOB,readonly" \
  --mount "type=bind,source=$jobdir/eval,target=/shared/jobs/$JOB/eval" \
  --mount "type=bind,source=$work/data/synth,target=/data,readonly" "$IMAGE" \
  python -m trainer.evaluate --data_dir /data/val --platform CPU --pretrained "/shared/jobs/$JOB/ckpt" \
  --output_dir "/shared/jobs/$JOB/eval") \
  || fail "trainer.evaluate failed: $eval_out"
echo "$eval_out"
tail -n 1 <<<"$eval_out" >"$work/eval.json"
python3 - "$work/eval.json" <<'EOF' || fail "trainer.evaluate printed no JSON result"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"top-1 {r['top1']:.4f}  top-5 {r['top5']:.4f}  ({r['images']} images, {r['checkpoint']})")
EOF

stamp "image-smoke passed"
[ -n "${SMOKE_DIR:-}" ] || rm -rf "$work"
